using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Horizon.Generators.Model
{
    /// <summary>
    /// Where in a spec file a diagnostic points, as plain data. A <see cref="Location"/> holds on to a syntax tree
    /// or file and is not value-equatable, so the pipeline keeps this instead and builds the location when reporting.
    /// Lines and columns are zero-based, as in <see cref="LinePosition"/>.
    /// </summary>
    internal sealed record LocationInfo(string FilePath, int Start, int Length, int StartLine, int StartColumn, int EndLine, int EndColumn)
    {
        public Location ToLocation() =>
            Location.Create(
                FilePath,
                new TextSpan(Start, Length),
                new LinePositionSpan(new LinePosition(StartLine, StartColumn), new LinePosition(EndLine, EndColumn)));
    }

    /// <summary>A diagnostic to report, as plain data: the descriptor's id, where, and the message arguments.</summary>
    internal sealed record DiagnosticInfo(string Id, LocationInfo? Location, EquatableArray<string> MessageArguments)
    {
        public Diagnostic ToDiagnostic()
        {
            var arguments = new object[MessageArguments.Count];
            for (int i = 0; i < arguments.Length; i++)
                arguments[i] = MessageArguments[i];
            return Diagnostic.Create(DiagnosticDescriptors.ById(Id), Location?.ToLocation() ?? Microsoft.CodeAnalysis.Location.None, arguments);
        }
    }
}
