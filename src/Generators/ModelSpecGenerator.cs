using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Text;
using System.Threading;
using Horizon.Generators.Emitter;
using Horizon.Generators.Model;
using Horizon.Generators.Parser;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Horizon.Generators
{
    /// <summary>
    /// Turns every <c>*.model.json</c> additional file into a typed model class (see docs/model-spec.md).
    /// The pipeline reads only additional files, never the compilation, so editing C# re-runs nothing. Each
    /// spec's output depends on that spec, plus the list of specs whose class name another spec already took, so
    /// editing one spec re-emits only its class.
    /// </summary>
    [Generator(LanguageNames.CSharp)]
    public sealed class ModelSpecGenerator : IIncrementalGenerator
    {
        /// <summary>Tracking names of the pipeline steps (tests assert what re-runs).</summary>
        public static class TrackingNames
        {
            public const string SpecFiles = nameof(SpecFiles);
            public const string ParsedSpecs = nameof(ParsedSpecs);
            public const string SpecOutputs = nameof(SpecOutputs);
            public const string SpecIdentities = nameof(SpecIdentities);
            public const string CrossSpecDiagnostics = nameof(CrossSpecDiagnostics);
            public const string ShadowedSpecs = nameof(ShadowedSpecs);
        }

        private const string SpecSuffix = ".model.json";

        public void Initialize(IncrementalGeneratorInitializationContext context)
        {
            var parsed = context.AdditionalTextsProvider
                .Where(static file => file.Path.EndsWith(SpecSuffix, StringComparison.OrdinalIgnoreCase))
                .WithTrackingName(TrackingNames.SpecFiles)
                .Select(static (file, cancellation) => Parse(file, cancellation))
                .WithTrackingName(TrackingNames.ParsedSpecs);

            // Names that must be unique across specs: class names (one file and one type per class) and
            // architectures (the registry maps each to one loader). Only this small projection is collected, so an
            // edit that keeps a spec's names changes nothing downstream of it.
            var identities = parsed
                .Select(static (spec, _) => spec.Identity)
                .WithTrackingName(TrackingNames.SpecIdentities)
                .Collect();

            var crossSpecDiagnostics = identities
                .Select(static (all, _) => FindDuplicates(all))
                .WithTrackingName(TrackingNames.CrossSpecDiagnostics);

            // Specs whose class name an earlier spec already generates. Two outputs with one hint name would make
            // the driver throw, so those are not emitted (HZ0005 says why). Paths only, no positions.
            var shadowedSpecs = identities
                .Select(static (all, _) => FindShadowedSpecs(all))
                .WithTrackingName(TrackingNames.ShadowedSpecs);

            // What the source output needs, without the identity's source positions: a valid spec that was only
            // reformatted projects to an equal value, so its class is not emitted again.
            var outputs = parsed
                .Select(static (spec, _) => new SpecOutput(spec.Identity.FilePath, spec.Spec, spec.Diagnostics))
                .WithTrackingName(TrackingNames.SpecOutputs)
                .Combine(shadowedSpecs);

            context.RegisterSourceOutput(outputs, static (output, pair) => Emit(output, pair.Left, pair.Right));
            context.RegisterSourceOutput(crossSpecDiagnostics, static (output, diagnostics) =>
            {
                foreach (var diagnostic in diagnostics)
                    output.ReportDiagnostic(diagnostic.ToDiagnostic());
            });
        }

        private static ParsedSpec Parse(AdditionalText file, CancellationToken cancellation)
        {
            try
            {
                SourceText? text = file.GetText(cancellation);
                if (text is null)
                    return Failed(file.Path, DiagnosticDescriptors.InvalidJson, "the file could not be read");
                return SpecParser.Parse(file.Path, text.ToString(), cancellation);
            }
            catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception e)
            {
                // A bug in the generator must not fail the whole compilation with a generic CS8785 warning and no
                // output: report it against the spec, with what went wrong.
                return Failed(file.Path, DiagnosticDescriptors.InternalError, Describe(e));
            }
        }

        private static ParsedSpec Failed(string path, DiagnosticDescriptor descriptor, string message)
        {
            var location = new LocationInfo(path, 0, 0, 0, 0, 0, 0);
            var diagnostic = new DiagnosticInfo(descriptor.Id, location, new EquatableArray<string>(new[] { message }));
            return new ParsedSpec(null, new EquatableArray<DiagnosticInfo>(new[] { diagnostic }),
                new SpecIdentity(path, null, EquatableArray<NamedLocation>.Empty));
        }

        private static void Emit(SourceProductionContext output, SpecOutput parsed, EquatableArray<string> shadowedSpecs)
        {
            foreach (var diagnostic in parsed.Diagnostics)
                output.ReportDiagnostic(diagnostic.ToDiagnostic());
            if (parsed.Spec is not ModelSpec spec || shadowedSpecs.Contains(parsed.FilePath))
                return;

            string source;
            try
            {
                source = ModelEmitter.Emit(spec);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                var location = new LocationInfo(parsed.FilePath, 0, 0, 0, 0, 0, 0);
                output.ReportDiagnostic(new DiagnosticInfo(DiagnosticDescriptors.InternalError.Id, location,
                    new EquatableArray<string>(new[] { Describe(e) })).ToDiagnostic());
                return;
            }

            output.AddSource(ModelEmitter.HintName(spec), SourceText.From(source, Encoding.UTF8));
        }

        /// <summary>Path order, so which spec comes "first" does not depend on the order MSBuild lists the files in.</summary>
        private static List<SpecIdentity> InPathOrder(ImmutableArray<SpecIdentity> identities)
        {
            var ordered = new List<SpecIdentity>(identities);
            ordered.Sort((a, b) => string.CompareOrdinal(a.FilePath, b.FilePath));
            return ordered;
        }

        private static EquatableArray<string> FindShadowedSpecs(ImmutableArray<SpecIdentity> identities)
        {
            var shadowed = new List<string>();
            var classes = new HashSet<string>(StringComparer.Ordinal);
            foreach (var identity in InPathOrder(identities))
            {
                if (identity.ClassName is NamedLocation className && !classes.Add(className.Name))
                    shadowed.Add(identity.FilePath);
            }
            return shadowed.ToEquatableArray();
        }

        private static EquatableArray<DiagnosticInfo> FindDuplicates(ImmutableArray<SpecIdentity> identities)
        {
            var diagnostics = new List<DiagnosticInfo>();
            try
            {
                var ordered = InPathOrder(identities);
                var classes = new Dictionary<string, string>(StringComparer.Ordinal);
                var architectures = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var identity in ordered)
                {
                    string file = SpecParser.FileNameOf(identity.FilePath);
                    if (identity.ClassName is NamedLocation className)
                    {
                        if (classes.TryGetValue(className.Name, out var first))
                            diagnostics.Add(Duplicate(className.Location, $"the class name '{className.Name}' is also generated from {first}; each spec needs its own \"model\" name"));
                        else
                            classes.Add(className.Name, file);
                    }
                    foreach (var architecture in identity.Architectures)
                    {
                        if (architectures.TryGetValue(architecture.Name, out var first))
                            diagnostics.Add(Duplicate(architecture.Location, $"architecture \"{architecture.Name}\" is also listed by {first}; ModelRegistry maps an architecture to one model"));
                        else
                            architectures.Add(architecture.Name, file);
                    }
                }
            }
            catch (Exception e)
            {
                diagnostics.Add(new DiagnosticInfo(DiagnosticDescriptors.InternalError.Id, null, new EquatableArray<string>(new[] { Describe(e) })));
            }
            return diagnostics.ToEquatableArray();
        }

        private static DiagnosticInfo Duplicate(LocationInfo location, string message) =>
            new DiagnosticInfo(DiagnosticDescriptors.DuplicateName.Id, location, new EquatableArray<string>(new[] { message }));

        /// <summary>The exception on one line (type, message, and the frame it came from) for HZ9999.</summary>
        private static string Describe(Exception e)
        {
            string frame = e.StackTrace is string trace ? trace.Split('\n')[0].Trim() : "";
            return $"{e.GetType().Name}: {e.Message}" + (frame.Length > 0 ? $" ({frame})" : "");
        }
    }
}
