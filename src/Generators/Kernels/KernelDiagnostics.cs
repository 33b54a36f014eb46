using System.Collections.Generic;
using Microsoft.CodeAnalysis;

namespace Horizon.Generators.Kernels
{
    /// <summary>
    /// The diagnostics of the kernel launcher generator (HZ1001…), documented with an example and the fix in
    /// docs/diagnostics.md, section "Kernel launchers". The ids are stable.
    /// </summary>
    internal static class KernelDiagnostics
    {
        public const string Category = "Horizon.Kernels";

        public static readonly DiagnosticDescriptor UnparseableSignature = Error(
            "HZ1001", "Unreadable kernel signature",
            "The kernel signature after extern \"C\" __global__ cannot be read: {0}; no launcher is generated for it");

        public static readonly DiagnosticDescriptor UnsupportedParameterType = Error(
            "HZ1002", "Unsupported kernel parameter type",
            "Kernel '{0}': parameter '{1}' has type '{2}', which has no typed launcher mapping ({3}); no launcher is generated for this kernel");

        public static readonly DiagnosticDescriptor DuplicateKernel = Error(
            "HZ1003", "Duplicate kernel",
            "{0}; only the first gets a launcher");

        private static readonly Dictionary<string, DiagnosticDescriptor> Table = new Dictionary<string, DiagnosticDescriptor>
        {
            [UnparseableSignature.Id] = UnparseableSignature,
            [UnsupportedParameterType.Id] = UnsupportedParameterType,
            [DuplicateKernel.Id] = DuplicateKernel,
        };

        public static DiagnosticDescriptor ById(string id) => Table[id];

        private static DiagnosticDescriptor Error(string id, string title, string messageFormat) =>
            new DiagnosticDescriptor(
                id,
                title,
                messageFormat,
                Category,
                DiagnosticSeverity.Error,
                isEnabledByDefault: true,
                description: "Each Horizon kernel launcher diagnostic is explained, with an example and the fix, in docs/diagnostics.md of the Horizon repository.");
    }
}
