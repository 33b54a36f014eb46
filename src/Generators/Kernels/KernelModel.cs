using System;
using System.Collections;
using System.Collections.Generic;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Horizon.Generators.Kernels
{
    /// <summary>
    /// An immutable list compared by its elements, so that the incremental pipeline (which caches each step's output
    /// by equality) sees two parses of the same signatures as equal. The kernel generator's own copy: the model spec
    /// generator's types are left to that generator.
    /// </summary>
    internal readonly struct ValueList<T> : IEquatable<ValueList<T>>, IReadOnlyList<T>
        where T : IEquatable<T>
    {
        public static readonly ValueList<T> Empty = new ValueList<T>(Array.Empty<T>());

        private readonly T[]? _items;

        public ValueList(T[] items) => _items = items;

        public ValueList(List<T> items) => _items = items.ToArray();

        private T[] Items => _items ?? Array.Empty<T>();

        public int Count => Items.Length;

        public T this[int index] => Items[index];

        public bool Equals(ValueList<T> other)
        {
            T[] mine = Items, theirs = other.Items;
            if (ReferenceEquals(mine, theirs))
                return true;
            if (mine.Length != theirs.Length)
                return false;
            for (int i = 0; i < mine.Length; i++)
            {
                if (!EqualityComparer<T>.Default.Equals(mine[i], theirs[i]))
                    return false;
            }
            return true;
        }

        public override bool Equals(object? obj) => obj is ValueList<T> other && Equals(other);

        public override int GetHashCode()
        {
            unchecked
            {
                int hash = 19;
                foreach (T item in Items)
                    hash = hash * 31 + (item is null ? 0 : EqualityComparer<T>.Default.GetHashCode(item));
                return hash;
            }
        }

        public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)Items).GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => Items.GetEnumerator();
    }

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
    internal sealed record KernelSignature(string Symbol, string LauncherName, ValueList<KernelParameter> Parameters);

    /// <summary>
    /// What the source output of one <c>.cu</c> file needs: no text positions, so an edit that keeps every signature
    /// (a kernel body, a comment) gives an equal value and nothing is emitted again.
    /// </summary>
    internal sealed record KernelModule(string Path, string Module, string FileName, string ClassName, ValueList<KernelSignature> Kernels);

    /// <summary>What the catalog needs of a module: its name, its file and its kernels' symbols (not their parameters).</summary>
    internal sealed record KernelCatalogModule(string Module, string FileName, ValueList<string> Symbols);

    /// <summary>A position in an additional file, kept as plain values (a <see cref="Location"/> is not cache-friendly).</summary>
    internal sealed record KernelLocation(string Path, int Start, int Length, int StartLine, int StartColumn, int EndLine, int EndColumn)
    {
        public Location ToLocation() =>
            Location.Create(Path, new TextSpan(Start, Length),
                new LinePositionSpan(new LinePosition(StartLine, StartColumn), new LinePosition(EndLine, EndColumn)));
    }

    /// <summary>A diagnostic found while reading a file, with its message arguments.</summary>
    internal sealed record KernelDiagnostic(string Id, KernelLocation Location, ValueList<string> Arguments)
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
    internal sealed record ParsedKernelFile(KernelModule? Module, ValueList<KernelDiagnostic> Diagnostics);
}
