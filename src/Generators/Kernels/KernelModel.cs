using System;
using System.Collections;
using System.Collections.Generic;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

using Horizon.Generators.Model;

namespace Horizon.Generators.Kernels
{
    /// <summary>How a C parameter type maps to C#: a device pointer to <c>Element</c>, or a value of <c>Element</c>.</summary>
    internal enum ParameterKind
    {
        Value,
        Pointer,
    }

    /// <summary>
    /// One kernel parameter: its C spelling (for the docs), its name in C and in C#, and the C# element type
    /// (<c>float</c>, <c>int</c>, <c>global::Horizon.Cuda.BFloat16</c>, ...). A pointer becomes
    /// <c>DevicePointer&lt;Element&gt;</c>, a value is passed as <c>Element</c>.
    /// </summary>
    internal sealed record KernelParameter(string CDeclaration, string CName, string CSharpName, ParameterKind Kind, string Element);

    /// <summary>One <c>extern "C" __global__</c> function: its symbol, the C# name of its launcher, and its parameters.</summary>
    internal sealed record KernelSignature(string Symbol, string LauncherName, EquatableArray<KernelParameter> Parameters);

    /// <summary>
    /// What the source output of one <c>.cu</c> file needs: no text positions, so an edit that keeps every signature
    /// (a kernel body, a comment) gives an equal value and nothing is emitted again.
    /// </summary>
    internal sealed record KernelModule(string Path, string Module, string FileName, string ClassName, EquatableArray<KernelSignature> Kernels);

    /// <summary>What the catalog needs of a module: its name, its file and its kernels' symbols (not their parameters).</summary>
    internal sealed record KernelCatalogModule(string Module, string FileName, EquatableArray<string> Symbols);

    /// <summary>A position in an additional file, kept as plain values (a <see cref="Location"/> is not cache-friendly).</summary>
    internal sealed record KernelLocation(string Path, int Start, int Length, int StartLine, int StartColumn, int EndLine, int EndColumn)
    {
        public Location ToLocation() =>
            Location.Create(Path, new TextSpan(Start, Length),
                new LinePositionSpan(new LinePosition(StartLine, StartColumn), new LinePosition(EndLine, EndColumn)));
    }

    /// <summary>A diagnostic found while reading a file, with its message arguments.</summary>
    internal sealed record KernelDiagnostic(string Id, KernelLocation Location, EquatableArray<string> Arguments)
    {
        public Diagnostic ToDiagnostic()
        {
            var arguments = new object[Arguments.Count];
            for (int i = 0; i < arguments.Length; i++)
                arguments[i] = Arguments[i];
            return Diagnostic.Create(KernelDiagnostics.ById(Id), Location.ToLocation(), arguments);
        }
    }

    /// <summary>The parse of one <c>.cu</c> file: the module (null when the file could not be read) and its diagnostics.</summary>
    internal sealed record ParsedKernelFile(KernelModule? Module, EquatableArray<KernelDiagnostic> Diagnostics);
}
