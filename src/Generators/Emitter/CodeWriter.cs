using System.Text;

namespace Horizon.Generators.Emitter
{
    /// <summary>
    /// Builds generated source line by line with four-space indentation. Lines end in '\n' on every platform so
    /// the generated text (and its baselines) do not depend on where the build runs.
    /// </summary>
    internal sealed class CodeWriter
    {
        private readonly StringBuilder _builder = new StringBuilder();
        private int _indent;

        public void Line(string text)
        {
            if (text.Length > 0)
                _builder.Append(' ', _indent * 4).Append(text);
            _builder.Append('\n');
        }

        public void Line() => _builder.Append('\n');

        /// <summary>Writes <paramref name="header"/> (if any) and an opening brace, then indents.</summary>
        public void Open(string? header = null)
        {
            if (header is not null)
                Line(header);
            Line("{");
            _indent++;
        }

        public void Close(string suffix = "")
        {
            _indent--;
            Line("}" + suffix);
        }

        public void Indent() => _indent++;

        public void Outdent() => _indent--;

        public override string ToString() => _builder.ToString();
    }
}
