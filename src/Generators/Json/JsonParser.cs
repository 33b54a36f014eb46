using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Horizon.Generators.Json
{
    /// <summary>A JSON syntax error: what is wrong and the text range to point at.</summary>
    internal sealed class JsonSyntaxError
    {
        public JsonSyntaxError(string message, int start, int length)
        {
            Message = message;
            Start = start;
            Length = length;
        }

        public string Message { get; }

        public int Start { get; }

        public int Length { get; }
    }

    /// <summary>
    /// A strict RFC 8259 JSON parser that keeps the position of every value and property name. Analyzers run in
    /// the compiler's process on netstandard2.0, where System.Text.Json is not something a generator can count on
    /// loading, and its reader does not report positions of values anyway. No comments, no trailing commas: a spec
    /// is also read by editors against docs/model-spec.schema.json, which expect plain JSON.
    /// </summary>
    internal sealed class JsonParser
    {
        /// <summary>
        /// Deeper nesting is refused. The parser recurses, and a stack overflow would take the compiler down with it
        /// (it cannot be caught); a spec never needs more than a few levels.
        /// </summary>
        public const int MaxDepth = 64;

        private readonly string _text;
        private int _position;
        private int _depth;
        private LineMap? _lines;

        private JsonParser(string text) => _text = text;

        /// <summary>Parses <paramref name="text"/>; exactly one of the results is null.</summary>
        public static (JsonNode? Root, JsonSyntaxError? Error) Parse(string text)
        {
            var parser = new JsonParser(text);
            try
            {
                return (parser.ParseDocument(), null);
            }
            catch (SyntaxException e)
            {
                return (null, e.Error);
            }
        }

        private JsonNode ParseDocument()
        {
            // A byte order mark is not JSON text, but editors write one; SourceText usually strips it already.
            if (_text.Length > 0 && _text[0] == '\uFEFF')
                _position = 1;
            SkipWhitespace();
            if (_position >= _text.Length)
                throw Error("the file is empty; a spec is one JSON object", _position, 0);
            JsonNode root = ParseValue();
            SkipWhitespace();
            if (_position < _text.Length)
                throw Error($"unexpected {DescribeCharacter(_position)} after the end of the JSON value", _position, 1);
            return root;
        }

        private JsonNode ParseValue()
        {
            if (_position >= _text.Length)
                throw Error("unexpected end of the file: a value is missing", _position, 0);
            char c = _text[_position];
            switch (c)
            {
                case '{':
                    return ParseObject();
                case '[':
                    return ParseArray();
                case '"':
                    int start = _position;
                    string value = ParseString();
                    return new JsonString(start, _position, value);
                case 't':
                    return ParseKeyword("true", JsonKind.True);
                case 'f':
                    return ParseKeyword("false", JsonKind.False);
                case 'n':
                    return ParseKeyword("null", JsonKind.Null);
                default:
                    if (c == '-' || (c >= '0' && c <= '9'))
                        return ParseNumber();
                    throw Error($"unexpected {DescribeCharacter(_position)}: expected a value (object, array, string, number, true, false or null)", _position, 1);
            }
        }

        private JsonObject ParseObject()
        {
            int start = _position;
            Enter(start);
            _position++; // '{'
            var properties = new List<JsonProperty>();
            SkipWhitespace();
            if (Peek() == '}')
            {
                _position++;
                _depth--;
                return new JsonObject(start, _position, properties);
            }
            while (true)
            {
                SkipWhitespace();
                if (Peek() != '"')
                    throw Expected("a property name in double quotes");
                int nameStart = _position;
                string name = ParseString();
                int nameEnd = _position;
                SkipWhitespace();
                if (Peek() != ':')
                    throw Expected("':' after the property name");
                _position++;
                SkipWhitespace();
                JsonNode value = ParseValue();
                properties.Add(new JsonProperty(name, nameStart, nameEnd, value));
                SkipWhitespace();
                char next = Peek();
                if (next == ',')
                {
                    _position++;
                    continue;
                }
                if (next == '}')
                {
                    _position++;
                    _depth--;
                    return new JsonObject(start, _position, properties);
                }
                throw Expected("',' or '}' in the object that starts at line " + LineOf(start));
            }
        }

        private JsonArray ParseArray()
        {
            int start = _position;
            Enter(start);
            _position++; // '['
            var items = new List<JsonNode>();
            SkipWhitespace();
            if (Peek() == ']')
            {
                _position++;
                _depth--;
                return new JsonArray(start, _position, items);
            }
            while (true)
            {
                SkipWhitespace();
                items.Add(ParseValue());
                SkipWhitespace();
                char next = Peek();
                if (next == ',')
                {
                    _position++;
                    continue;
                }
                if (next == ']')
                {
                    _position++;
                    _depth--;
                    return new JsonArray(start, _position, items);
                }
                throw Expected("',' or ']' in the array that starts at line " + LineOf(start));
            }
        }

        /// <summary>Reads a string starting at the opening quote and returns its unescaped value.</summary>
        private string ParseString()
        {
            int start = _position;
            _position++; // opening quote
            StringBuilder? builder = null;
            int runStart = _position;
            while (true)
            {
                if (_position >= _text.Length)
                    throw Error("the string is not closed: it runs to the end of the file", start, 1);
                char c = _text[_position];
                if (c == '"')
                {
                    string value = builder is null
                        ? _text.Substring(runStart, _position - runStart)
                        : builder.Append(_text, runStart, _position - runStart).ToString();
                    _position++;
                    return value;
                }
                if (c == '\n' || c == '\r')
                {
                    // Almost always a missing closing quote: point at the string it belongs to.
                    throw Error("the string is not closed before the end of the line (a line break inside a string must be written \\n)", start, _position - start);
                }
                if (c < ' ')
                    throw Error($"the control character U+{(int)c:X4} inside a string must be escaped (\\u{(int)c:X4})", _position, 1);
                if (c != '\\')
                {
                    _position++;
                    continue;
                }
                builder ??= new StringBuilder();
                builder.Append(_text, runStart, _position - runStart);
                builder.Append(ParseEscape());
                runStart = _position;
            }
        }

        private char ParseEscape()
        {
            int start = _position;
            _position++; // backslash
            if (_position >= _text.Length)
                throw Error("the string is not closed: it runs to the end of the file", start, 1);
            char c = _text[_position++];
            switch (c)
            {
                case '"': return '"';
                case '\\': return '\\';
                case '/': return '/';
                case 'b': return '\b';
                case 'f': return '\f';
                case 'n': return '\n';
                case 'r': return '\r';
                case 't': return '\t';
                case 'u':
                    int code = 0;
                    for (int i = 0; i < 4; i++)
                    {
                        int digit = _position < _text.Length ? HexValue(_text[_position]) : -1;
                        if (digit < 0)
                            throw Error("'\\u' must be followed by four hexadecimal digits", start, Math.Min(_position, _text.Length) - start);
                        code = code * 16 + digit;
                        _position++;
                    }
                    // Surrogate halves pass through as UTF-16 code units, as in any JSON reader that yields strings.
                    return (char)code;
                default:
                    throw Error($"'\\{Printable(c)}' is not a JSON escape (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)", start, 2);
            }
        }

        private static int HexValue(char c)
        {
            if (c >= '0' && c <= '9')
                return c - '0';
            if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
            if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
            return -1;
        }

        /// <summary>-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?</summary>
        private JsonNumber ParseNumber()
        {
            int start = _position;
            if (Peek() == '-')
                _position++;
            if (Peek() == '0')
            {
                _position++;
                if (IsDigit(Peek()))
                    throw Error("a JSON number cannot have a leading zero", start, _position + 1 - start);
            }
            else if (IsDigit(Peek()))
            {
                while (IsDigit(Peek()))
                    _position++;
            }
            else
            {
                throw Error("'-' must be followed by a digit", start, 1);
            }
            bool integral = true;
            if (Peek() == '.')
            {
                integral = false;
                _position++;
                if (!IsDigit(Peek()))
                    throw Error("a digit must follow the decimal point", start, _position - start);
                while (IsDigit(Peek()))
                    _position++;
            }
            if (Peek() == 'e' || Peek() == 'E')
            {
                integral = false;
                _position++;
                if (Peek() == '+' || Peek() == '-')
                    _position++;
                if (!IsDigit(Peek()))
                    throw Error("a digit must follow the exponent", start, _position - start);
                while (IsDigit(Peek()))
                    _position++;
            }
            string text = _text.Substring(start, _position - start);
            // Out-of-range values become ±infinity rather than failing; the spec parser refuses them with context.
            double value = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
            long? integer = null;
            if (integral && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long whole))
                integer = whole;
            return new JsonNumber(start, _position, text, value, integer);
        }

        private JsonLiteral ParseKeyword(string keyword, JsonKind kind)
        {
            int start = _position;
            if (string.CompareOrdinal(_text, start, keyword, 0, keyword.Length) != 0 || IsWordCharacter(start + keyword.Length))
            {
                int end = start;
                while (IsWordCharacter(end))
                    end++;
                string word = _text.Substring(start, Math.Max(1, end - start));
                throw Error($"unexpected '{Printable(word)}': expected a value (strings need double quotes)", start, Math.Max(1, end - start));
            }
            _position += keyword.Length;
            return new JsonLiteral(start, _position, kind);
        }

        private bool IsWordCharacter(int offset) =>
            offset < _text.Length && (char.IsLetterOrDigit(_text[offset]) || _text[offset] == '_');

        private static bool IsDigit(char c) => c >= '0' && c <= '9';

        private char Peek() => _position < _text.Length ? _text[_position] : '\0';

        private void SkipWhitespace()
        {
            while (_position < _text.Length)
            {
                char c = _text[_position];
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
                    return;
                _position++;
            }
        }

        private void Enter(int start)
        {
            if (++_depth > MaxDepth)
                throw Error($"objects and arrays are nested more than {MaxDepth} deep", start, 1);
        }

        private int LineOf(int offset)
        {
            _lines ??= new LineMap(_text);
            return _lines.Position(offset).Line + 1;
        }

        private SyntaxException Expected(string what)
        {
            if (_position >= _text.Length)
                return Error($"unexpected end of the file: expected {what}", _position, 0);
            return Error($"unexpected {DescribeCharacter(_position)}: expected {what}", _position, 1);
        }

        private string DescribeCharacter(int offset) => $"'{Printable(_text[offset])}'";

        private static string Printable(char c) => Printable(c.ToString());

        /// <summary>Shows control and invisible characters as U+XXXX so a message never breaks a build log line.</summary>
        private static string Printable(string text)
        {
            var builder = new StringBuilder();
            foreach (char c in text)
            {
                if (c < ' ' || c == '\u0085' || c == '\u2028' || c == '\u2029' || (c >= '\u007F' && c <= '\u009F') || char.IsSurrogate(c) || c == '\uFEFF')
                    builder.Append("U+").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture));
                else
                    builder.Append(c);
            }
            return builder.ToString();
        }

        private static SyntaxException Error(string message, int start, int length) =>
            new SyntaxException(new JsonSyntaxError(message, start, length));

        private sealed class SyntaxException : Exception
        {
            public SyntaxException(JsonSyntaxError error)
                : base(error.Message) => Error = error;

            public JsonSyntaxError Error { get; }
        }
    }
}
