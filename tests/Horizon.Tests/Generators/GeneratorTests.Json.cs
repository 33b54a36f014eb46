using Horizon.Generators.Json;
using NUnit.Framework;

namespace Horizon.Tests.Generators;

// The generator's own JSON reader: values, escapes and the positions diagnostics rely on.
public partial class GeneratorTests
{
    [Test]
    public void Json_reader_keeps_the_position_of_every_value_and_name()
    {
        const string text = "{\n  \"a\": [1, -2.5e3, true],\r\n  \"b\": { \"c\": null }\n}";
        var (root, error) = JsonParser.Parse(text);
        Assert.That(error, Is.Null);
        var lines = new LineMap(text);
        var obj = (JsonObject)root!;
        var a = obj.Properties[0];
        var b = obj.Properties[1];

        Assert.That(lines.Position(a.NameStart), Is.EqualTo((1, 2)));
        Assert.That(lines.Position(a.Value.Start), Is.EqualTo((1, 7)));
        var items = ((JsonArray)a.Value).Items;
        Assert.That(items.Select(i => lines.Position(i.Start)), Is.EqualTo(new[] { (1, 8), (1, 11), (1, 19) }));
        Assert.That(((JsonNumber)items[0]).Integer, Is.EqualTo(1));
        Assert.That(((JsonNumber)items[1]).Value, Is.EqualTo(-2500.0));
        Assert.That(((JsonNumber)items[1]).Integer, Is.Null);
        Assert.That(items[2].Kind, Is.EqualTo(JsonKind.True));
        // CR LF is one line break.
        Assert.That(lines.Position(b.NameStart), Is.EqualTo((2, 2)));
        var c = ((JsonObject)b.Value).Properties[0];
        Assert.That(lines.Position(c.Value.Start), Is.EqualTo((2, 14)));
        Assert.That(c.Value.Kind, Is.EqualTo(JsonKind.Null));
        Assert.That(text[c.Value.Start..c.Value.End], Is.EqualTo("null"));
    }

    [Test]
    public void Json_reader_unescapes_strings()
    {
        var (root, error) = JsonParser.Parse("[\"q\\\"b\\\\s\\/n\\n\\t\\u00e9\\uD83D\\uDE00\\u0041\"]");
        Assert.That(error, Is.Null);
        Assert.That(((JsonString)((JsonArray)root!).Items[0]).Value, Is.EqualTo("q\"b\\s/n\n\té😀A"));
    }

    [TestCase("{\"a\": 01}", "leading zero", 6)]
    [TestCase("{\"a\": 1,}", "a property name", 8)]
    [TestCase("{\"a\" 1}", "':'", 5)]
    [TestCase("[1 2]", "',' or ']'", 3)]
    [TestCase("{'a': 1}", "a property name", 1)]
    [TestCase("{\"a\": tru}", "unexpected 'tru'", 6)]
    [TestCase("{\"a\": \"\\x\"}", "not a JSON escape", 7)]
    [TestCase("{\"a\": 1} x", "after the end", 9)]
    [TestCase("{\"a\": 1", "unexpected end of the file", 7)]
    [TestCase("// comment\n{}", "unexpected '/'", 0)]
    public void Json_reader_reports_errors_where_they_are(string text, string message, int offset)
    {
        var (root, error) = JsonParser.Parse(text);
        Assert.That(root, Is.Null);
        Assert.That(error!.Message, Does.Contain(message));
        Assert.That(error.Start, Is.EqualTo(offset));
    }
}
