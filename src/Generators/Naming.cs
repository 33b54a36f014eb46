using System.Globalization;
using System.Text;
using Microsoft.CodeAnalysis.CSharp;

namespace Horizon.Generators
{
    /// <summary>Spec names to C# names, and text safely embedded in generated C#.</summary>
    internal static class Naming
    {
        /// <summary>
        /// A spec name (symbol, node, block group): ASCII letters, digits and underscores, not starting with a digit,
        /// with at least one letter. snake_case is the convention, matching the Hugging Face names it mirrors.
        /// </summary>
        public static bool IsSpecName(string name)
        {
            if (name.Length == 0 || IsAsciiDigit(name[0]))
                return false;
            bool hasLetter = false;
            foreach (char c in name)
            {
                if (IsAsciiLetter(c))
                    hasLetter = true;
                else if (!IsAsciiDigit(c) && c != '_')
                    return false;
            }
            // "_1" would become the C# name "1".
            return hasLetter && ToPascalCase(name).Length > 0 && IsAsciiLetter(ToPascalCase(name)[0]);
        }

        /// <summary>self_attn → SelfAttn, lm_head → LmHead: each underscore-separated part capitalised and joined.</summary>
        public static string ToPascalCase(string name)
        {
            var builder = new StringBuilder(name.Length);
            foreach (string part in name.Split('_'))
            {
                if (part.Length == 0)
                    continue;
                builder.Append(char.ToUpperInvariant(part[0])).Append(part, 1, part.Length - 1);
            }
            return builder.ToString();
        }

        /// <summary>SelfAttn → selfAttn, for locals.</summary>
        public static string ToCamelCase(string pascal) =>
            pascal.Length == 0 ? pascal : char.ToLowerInvariant(pascal[0]) + pascal.Substring(1);

        /// <summary>The generated class name: PascalCase, ASCII, and no C# keyword.</summary>
        public static bool IsClassName(string name)
        {
            if (name.Length == 0 || !(name[0] >= 'A' && name[0] <= 'Z'))
                return false;
            foreach (char c in name)
            {
                if (!IsAsciiLetter(c) && !IsAsciiDigit(c) && c != '_')
                    return false;
            }
            return true;
        }

        /// <summary>A dotted namespace of ASCII identifiers, none a C# keyword (nor <c>global</c>).</summary>
        public static bool IsNamespace(string name)
        {
            if (name.Length == 0)
                return false;
            foreach (string part in name.Split('.'))
            {
                if (part.Length == 0 || IsAsciiDigit(part[0]) || part == "global")
                    return false;
                foreach (char c in part)
                {
                    if (!IsAsciiLetter(c) && !IsAsciiDigit(c) && c != '_')
                        return false;
                }
                if (SyntaxFacts.GetKeywordKind(part) != SyntaxKind.None)
                    return false;
            }
            return true;
        }

        /// <summary>True for names C# reserves as keywords, which a local must escape with '@'.</summary>
        public static bool IsKeyword(string name) => SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None;

        /// <summary>
        /// A C# string literal holding exactly <paramref name="value"/>. Everything outside printable ASCII is
        /// written as \uXXXX, so tensor names from a spec can never end the literal or the line early.
        /// </summary>
        public static string StringLiteral(string value)
        {
            var builder = new StringBuilder(value.Length + 2).Append('"');
            foreach (char c in value)
            {
                if (c == '"')
                    builder.Append("\\\"");
                else if (c == '\\')
                    builder.Append("\\\\");
                else if (c >= ' ' && c <= '~')
                    builder.Append(c);
                else
                    builder.Append("\\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
            }
            return builder.Append('"').ToString();
        }

        /// <summary>
        /// Text for an XML doc comment: markup characters escaped, and anything C# reads as a line break (which
        /// would end the <c>///</c> comment and spill into code) or a control character replaced by a space. A
        /// character XML does not allow (a lone surrogate, U+FFFE, U+FFFF) becomes U+FFFD.
        /// </summary>
        public static string XmlText(string value)
        {
            var builder = new StringBuilder(value.Length);
            for (int i = 0; i < value.Length; i++)
            {
                char c = value[i];
                switch (c)
                {
                    case '&': builder.Append("&amp;"); break;
                    case '<': builder.Append("&lt;"); break;
                    case '>': builder.Append("&gt;"); break;
                    default:
                        if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
                        {
                            builder.Append(c).Append(value[++i]);
                        }
                        else if (char.IsSurrogate(c) || c == '\uFFFE' || c == '\uFFFF')
                        {
                            builder.Append('\uFFFD');
                        }
                        else
                        {
                            builder.Append(c < ' ' || c == '\u0085' || c == '\u2028' || c == '\u2029' || (c >= '\u007F' && c <= '\u009F') ? ' ' : c);
                        }
                        break;
                }
            }
            return builder.ToString();
        }

        /// <summary>A float literal that round-trips: R format, invariant culture, f suffix.</summary>
        public static string FloatLiteral(double value) =>
            ((float)value).ToString("R", CultureInfo.InvariantCulture) + "f";

        /// <summary>A double literal that round-trips: R format, invariant culture, d suffix.</summary>
        public static string DoubleLiteral(double value) =>
            value.ToString("R", CultureInfo.InvariantCulture) + "d";

        public static string IntLiteral(long value) => value.ToString(CultureInfo.InvariantCulture);

        private static bool IsAsciiLetter(char c) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

        private static bool IsAsciiDigit(char c) => c >= '0' && c <= '9';
    }
}
