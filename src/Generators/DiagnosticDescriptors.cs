using System.Collections.Generic;
using Microsoft.CodeAnalysis;

namespace Horizon.Generators
{
    /// <summary>
    /// Every diagnostic of the model spec generator, in one table. Documented with an example and the fix in
    /// docs/diagnostics.md; the ids are stable (tests, docs and users' NoWarn lists refer to them).
    /// </summary>
    internal static class DiagnosticDescriptors
    {
        public const string Category = "Horizon.ModelSpec";

        public static readonly DiagnosticDescriptor InvalidJson = Error(
            "HZ0001", "Invalid JSON", "Invalid JSON: {0}");

        public static readonly DiagnosticDescriptor UnknownNodeKind = Error(
            "HZ0002", "Unknown node kind", "{0}");

        public static readonly DiagnosticDescriptor MissingProperty = Error(
            "HZ0003", "Missing required property", "{0} has no \"{1}\"{2}");

        public static readonly DiagnosticDescriptor SizeDoesNotDivide = Error(
            "HZ0004", "Size does not divide", "{0}");

        public static readonly DiagnosticDescriptor DuplicateName = Error(
            "HZ0005", "Duplicate name", "{0}");

        public static readonly DiagnosticDescriptor UnboundSymbol = Error(
            "HZ0006", "Unbound symbol", "{0} refers to '{1}', which is not declared in \"symbols\"{2}");

        public static readonly DiagnosticDescriptor InvalidValue = Error(
            "HZ0007", "Invalid value", "{0}");

        public static readonly DiagnosticDescriptor SymbolTypeMismatch = Error(
            "HZ0008", "Symbol type does not fit", "{0} must be {1}, but symbol '{2}' is declared as {3}");

        public static readonly DiagnosticDescriptor InternalError = Error(
            "HZ9999", "Internal error in the model spec generator", "The model spec generator failed on this spec: {0}");

        private static readonly Dictionary<string, DiagnosticDescriptor> Table = new Dictionary<string, DiagnosticDescriptor>
        {
            [InvalidJson.Id] = InvalidJson,
            [UnknownNodeKind.Id] = UnknownNodeKind,
            [MissingProperty.Id] = MissingProperty,
            [SizeDoesNotDivide.Id] = SizeDoesNotDivide,
            [DuplicateName.Id] = DuplicateName,
            [UnboundSymbol.Id] = UnboundSymbol,
            [InvalidValue.Id] = InvalidValue,
            [SymbolTypeMismatch.Id] = SymbolTypeMismatch,
            [InternalError.Id] = InternalError,
        };

        /// <summary>The descriptor of an id stored in a <see cref="Model.DiagnosticInfo"/>.</summary>
        public static DiagnosticDescriptor ById(string id) => Table.TryGetValue(id, out var descriptor) ? descriptor : InternalError;

        private static DiagnosticDescriptor Error(string id, string title, string messageFormat) =>
            new DiagnosticDescriptor(
                id,
                title,
                messageFormat,
                Category,
                DiagnosticSeverity.Error,
                isEnabledByDefault: true,
                description: "Each Horizon model spec diagnostic is explained, with an example and the fix, in docs/diagnostics.md of the Horizon repository.");
    }
}
