using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Text;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

using Horizon.Generators.Model;

namespace Horizon.Generators.Kernels
{
    /// <summary>
    /// Turns the <c>extern "C" __global__</c> signatures of every <c>*.cu</c> additional file into typed C# launchers:
    /// one <c>Cuda{Module}Kernels</c> class per file with one method per kernel, and <c>CudaKernelCatalog</c> listing
    /// them all (docs/cuda.md, "Typed launchers"). Reads only additional files, never the compilation, so C# edits
    /// re-run nothing; a file's class depends on its signatures alone (and on whether an earlier file already took
    /// its class name), so editing a kernel's body or another file re-emits nothing.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class KernelLauncherGenerator : IIncrementalGenerator
    {
        /// <summary>Tracking names of the pipeline steps (tests assert what re-runs).</summary>
        public static class TrackingNames
        {
            public const string KernelFiles = nameof(KernelFiles);
            public const string ParsedKernelFiles = nameof(ParsedKernelFiles);
            public const string KernelModules = nameof(KernelModules);
            public const string KernelDiagnostics = nameof(KernelDiagnostics);
            public const string ShadowedModules = nameof(ShadowedModules);
            public const string Catalog = nameof(Catalog);
        }

        /// <summary>The additional files this generator reads (the model spec generator reads *.model.json only).</summary>
        public const string SourceExtension = ".cu";

        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            var parsed = context.AdditionalTextsProvider
                .Where(static file => file.Path.EndsWith(SourceExtension, StringComparison.OrdinalIgnoreCase))
                .WithTrackingName(TrackingNames.KernelFiles)
                .Select(static (file, cancellation) => Parse(file, cancellation))
                .WithTrackingName(TrackingNames.ParsedKernelFiles);

            var diagnostics = parsed
                .Select(static (file, _) => file.Diagnostics)
                .WithTrackingName(TrackingNames.KernelDiagnostics);
            context.RegisterSourceOutput(diagnostics, static (output, list) =>
            {
                foreach (var diagnostic in list)
                    output.ReportDiagnostic(diagnostic.ToDiagnostic());
            });

            // Positions stay out of what the source output reads: an equal module is not emitted again.
            var modules = parsed
                .Where(static file => file.Module is not null)
                .Select(static (file, _) => file.Module!)
                .WithTrackingName(TrackingNames.KernelModules);

            var collected = modules.Collect();

            // Two files whose names give one class name: the later path is not emitted (HZ1003 says why).
            var shadowed = collected
                .Select(static (all, _) => FindShadowed(all))
                .WithTrackingName(TrackingNames.ShadowedModules);

            context.RegisterSourceOutput(modules.Combine(shadowed), static (output, pair) =>
            {
                var (module, hidden) = pair;
                if (module.Kernels.Count == 0 || Contains(hidden.Paths, module.Path))
                    return;
                output.AddSource(KernelLauncherEmitter.HintName(module), SourceText.From(KernelLauncherEmitter.Emit(module), Encoding.UTF8));
            });
            context.RegisterSourceOutput(shadowed, static (output, hidden) =>
            {
                foreach (var diagnostic in hidden.Diagnostics)
                    output.ReportDiagnostic(diagnostic.ToDiagnostic());
            });

            var catalog = collected
                .Select(static (all, _) => CatalogOf(all))
                .WithTrackingName(TrackingNames.Catalog);
            // No kernel file, no catalog: a project that only consumes Horizon (and gets this generator with the
            // package) must not grow a Horizon.Cuda type of its own.
            context.RegisterSourceOutput(catalog, static (output, list) =>
            {
                if (list.Count > 0)
                    output.AddSource(KernelLauncherEmitter.CatalogHintName, SourceText.From(KernelLauncherEmitter.EmitCatalog(list), Encoding.UTF8));
            });
        }

        private static ParsedKernelFile Parse(AdditionalText file, CancellationToken cancellation)
        {
            SourceText? text = file.GetText(cancellation);
            if (text is null)
                return new ParsedKernelFile(null, EquatableArray<KernelDiagnostic>.Empty);
            return KernelSignatureParser.Parse(file.Path, text, cancellation);
        }

        /// <summary>The paths of the modules not emitted, and the HZ1003 diagnostics saying why.</summary>
        private sealed record Shadowed(EquatableArray<string> Paths, EquatableArray<KernelDiagnostic> Diagnostics);

        private static bool Contains(EquatableArray<string> list, string value)
        {
            foreach (string item in list)
            {
                if (item == value)
                    return true;
            }
            return false;
        }

        private static List<KernelModule> Ordered(ImmutableArray<KernelModule> all)
        {
            var ordered = new List<KernelModule>(all);
            ordered.Sort((a, b) =>
            {
                int byModule = string.CompareOrdinal(a.Module, b.Module);
                return byModule != 0 ? byModule : string.CompareOrdinal(a.Path, b.Path);
            });
            return ordered;
        }

        private static Shadowed FindShadowed(ImmutableArray<KernelModule> all)
        {
            var owners = new Dictionary<string, KernelModule>(StringComparer.Ordinal);
            var hidden = new List<string>();
            var diagnostics = new List<KernelDiagnostic>();
            foreach (var module in Ordered(all))
            {
                if (module.Kernels.Count == 0)
                    continue;
                if (owners.TryGetValue(module.ClassName, out var first))
                {
                    hidden.Add(module.Path);
                    var location = new KernelLocation(module.Path, 0, 0, 0, 0, 0, 0);
                    diagnostics.Add(new KernelDiagnostic(KernelDiagnostics.DuplicateKernel.Id, location, new EquatableArray<string>(new[]
                    {
                        $"{module.FileName} would generate the class '{module.ClassName}', which {first.FileName} already generates; rename one of the files",
                    })));
                }
                else
                {
                    owners.Add(module.ClassName, module);
                }
            }
            return new Shadowed(new EquatableArray<string>(hidden), new EquatableArray<KernelDiagnostic>(diagnostics));
        }

        /// <summary>The modules that get a class, symbols only: a parameter edit leaves the catalog cached.</summary>
        private static EquatableArray<KernelCatalogModule> CatalogOf(ImmutableArray<KernelModule> all)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var kept = new List<KernelCatalogModule>();
            foreach (var module in Ordered(all))
            {
                if (module.Kernels.Count == 0 || !seen.Add(module.ClassName))
                    continue;
                var symbols = new List<string>();
                foreach (var kernel in module.Kernels)
                    symbols.Add(kernel.Symbol);
                kept.Add(new KernelCatalogModule(module.Module, module.FileName, new EquatableArray<string>(symbols)));
            }
            return new EquatableArray<KernelCatalogModule>(kept);
        }
    }
}
