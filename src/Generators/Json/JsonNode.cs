using System.Collections.Generic;

namespace Horizon.Generators.Json
{
    internal enum JsonKind
    {
        Object,
        Array,
        String,
        Number,
        True,
        False,
        Null,
    }

    /// <summary>
    /// A JSON value and where it is in the text: <see cref="Start"/> is the offset of its first character and
    /// <see cref="End"/> the offset just after its last, so every diagnostic can point at the exact value.
    /// </summary>
    internal abstract class JsonNode
    {
        protected JsonNode(int start, int end)
        {
            Start = start;
            End = end;
        }

        public int Start { get; }

        public int End { get; }

        public abstract JsonKind Kind { get; }

        /// <summary>The kind of value in words, for messages such as "must be a string, found a number".</summary>
        public string Describe() => Kind switch
        {
            JsonKind.Object => "an object",
            JsonKind.Array => "an array",
            JsonKind.String => "a string",
            JsonKind.Number => "a number",
            JsonKind.True => "true",
            JsonKind.False => "false",
            _ => "null",
        };
    }

    internal sealed class JsonProperty
    {
        public JsonProperty(string name, int nameStart, int nameEnd, JsonNode value)
        {
            Name = name;
            NameStart = nameStart;
            NameEnd = nameEnd;
            Value = value;
        }

        public string Name { get; }

        /// <summary>Offset of the opening quote of the name.</summary>
        public int NameStart { get; }

        public int NameEnd { get; }

        public JsonNode Value { get; }
    }

    /// <summary>An object, its properties in text order; a repeated name is kept so the spec parser can report it.</summary>
    internal sealed class JsonObject : JsonNode
    {
        public JsonObject(int start, int end, IReadOnlyList<JsonProperty> properties)
            : base(start, end) => Properties = properties;

        public override JsonKind Kind => JsonKind.Object;

        public IReadOnlyList<JsonProperty> Properties { get; }
    }

    internal sealed class JsonArray : JsonNode
    {
        public JsonArray(int start, int end, IReadOnlyList<JsonNode> items)
            : base(start, end) => Items = items;

        public override JsonKind Kind => JsonKind.Array;

        public IReadOnlyList<JsonNode> Items { get; }
    }

    internal sealed class JsonString : JsonNode
    {
        public JsonString(int start, int end, string value)
            : base(start, end) => Value = value;

        public override JsonKind Kind => JsonKind.String;

        /// <summary>The unescaped value.</summary>
        public string Value { get; }
    }

    internal sealed class JsonNumber : JsonNode
    {
        public JsonNumber(int start, int end, string text, double value, long? integer)
            : base(start, end)
        {
            Text = text;
            Value = value;
            Integer = integer;
        }

        public override JsonKind Kind => JsonKind.Number;

        /// <summary>The number as written.</summary>
        public string Text { get; }

        public double Value { get; }

        /// <summary>The value when written without fraction or exponent and within the range of a long.</summary>
        public long? Integer { get; }
    }

    /// <summary><c>true</c>, <c>false</c> or <c>null</c>.</summary>
    internal sealed class JsonLiteral : JsonNode
    {
        public JsonLiteral(int start, int end, JsonKind kind)
            : base(start, end) => Kind = kind;

        public override JsonKind Kind { get; }
    }
}
