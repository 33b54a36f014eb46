using System.Collections.Generic;
using System.Threading;
using Horizon.Generators.Json;
using Horizon.Generators.Model;
using Microsoft.CodeAnalysis;

namespace Horizon.Generators.Parser
{
    /// <summary>
    /// Turns the text of one <c>*.model.json</c> into a <see cref="ModelSpec"/> plus diagnostics. It decides every
    /// diagnostic about a spec; the emitter only ever sees valid specs. It keeps going after an error, so one build
    /// reports all the problems of a spec rather than the first.
    /// </summary>
    internal sealed partial class SpecParser
    {
        /// <summary>The namespace of a spec that does not say.</summary>
        public const string DefaultNamespace = "Horizon.Models";

        private readonly string _path;
        private readonly string _text;
        private readonly LineMap _lines;
        private readonly CancellationToken _cancellation;
        private readonly List<DiagnosticInfo> _diagnostics = new List<DiagnosticInfo>();

        private SpecParser(string path, string text, CancellationToken cancellation)
        {
            _path = path;
            _text = text;
            _lines = new LineMap(text);
            _cancellation = cancellation;
        }

        public static ParsedSpec Parse(string path, string text, CancellationToken cancellation)
        {
            var parser = new SpecParser(path, text, cancellation);
            return parser.ParseFile();
        }

        /// <summary>The file name without folders: how generated comments and <c>ModelInfo.SpecName</c> name a spec.</summary>
        public static string FileNameOf(string path)
        {
            int slash = System.Math.Max(path.LastIndexOf('/'), path.LastIndexOf('\\'));
            return slash < 0 ? path : path.Substring(slash + 1);
        }

        private ParsedSpec ParseFile()
        {
            _cancellation.ThrowIfCancellationRequested();
            var (root, error) = JsonParser.Parse(_text);
            if (root is null)
            {
                Report(DiagnosticDescriptors.InvalidJson, error!.Start, error.Length, error.Message);
                return Result(null, null, EquatableArray<NamedLocation>.Empty);
            }
            return ParseRoot(root);
        }

        private ParsedSpec Result(ModelSpec? spec, NamedLocation? className, EquatableArray<NamedLocation> architectures)
        {
            bool failed = false;
            foreach (var diagnostic in _diagnostics)
                failed |= DiagnosticDescriptors.ById(diagnostic.Id).DefaultSeverity == DiagnosticSeverity.Error;
            return new ParsedSpec(
                failed ? null : spec,
                _diagnostics.ToEquatableArray(),
                new SpecIdentity(_path, className, architectures));
        }

        private ParsedSpec ParseRoot(JsonNode rootNode)
        {
            if (rootNode is not JsonObject root)
            {
                Report(DiagnosticDescriptors.InvalidValue, rootNode, $"a spec must be a JSON object, found {rootNode.Describe()}");
                return Result(null, null, EquatableArray<NamedLocation>.Empty);
            }

            var reader = new ObjectReader(this, root, "the spec");
            // Editors use "$schema" to validate and complete the file; the generator has no use for it.
            if (reader.Optional("$schema") is JsonNode schema && schema is not JsonString)
                Report(DiagnosticDescriptors.InvalidValue, schema, $"\"$schema\" must be a string (the path or URL of model-spec.schema.json), found {schema.Describe()}");

            var classNode = reader.Required("model", " (the name of the generated C# class, e.g. \"LlamaModel\")");
            string? className = ReadClassName(classNode);
            string? ns = DefaultNamespace;
            if (reader.Optional("namespace") is JsonNode namespaceNode)
                ns = ReadNamespace(namespaceNode);
            var architectures = ReadArchitectures(reader.Required("architectures", " (the config.json \"architectures\" names this class loads)"));

            var supportedValues = ReadSupportedConfigValues(reader.Optional("supported_config_values"));
            // Symbols first: every other section refers to them.
            ReadSymbols(reader.Optional("symbols"));

            // One level (embedding → blocks → final_norm), or two ("levels": a block decoder and a token decoder, each
            // with its own); the head comes after the last level either way.
            ParsedEmbedding? embedding;
            List<ParsedBlock>? blocks;
            ParsedNode? finalNorm;
            ParsedLevels? levels = null;
            var levelsNode = reader.Optional("levels");
            if (levelsNode is null)
            {
                embedding = ReadEmbedding(reader.Required("embedding"), "\"embedding\"");
                blocks = ReadBlocks(reader.Required("blocks"));
                finalNorm = ReadNode(reader.Required("final_norm"), NodeRole.Norm, "\"final_norm\"", null);
            }
            else
            {
                foreach (string single in new[] { "embedding", "blocks", "final_norm" })
                {
                    if (reader.Property(single) is JsonProperty misplaced)
                        ReportAtName(DiagnosticDescriptors.InvalidValue, misplaced,
                            $"\"{single}\" is not used by a spec with \"levels\": each level (\"block_decoder\", \"token_decoder\") has its own");
                }
                levels = ReadLevels(levelsNode);
                embedding = levels?.TokenEmbedding;
                blocks = levels?.TokenBlocks;
                finalNorm = levels?.TokenFinalNorm;
            }
            var lmHead = ReadLmHead(reader.Required("lm_head"));
            reader.ReportUnknown();

            var classNameLocation = className is null ? null : new NamedLocation(className, At(classNode!));
            _cancellation.ThrowIfCancellationRequested();

            ModelSpec? spec = null;
            if (className is not null && ns is not null && architectures is not null && supportedValues is not null && embedding is not null
                && blocks is not null && finalNorm is not null && lmHead is not null && _symbolsValid && (levelsNode is null || levels is not null))
            {
                CheckMemberNames(className, classNode!, embedding, blocks, finalNorm, lmHead, levels);
                var specBlocks = new List<BlockGroupSpec>();
                foreach (var block in blocks)
                    specBlocks.Add(block.Spec);
                spec = new ModelSpec(
                    FileNameOf(_path),
                    className,
                    ns,
                    Names(architectures),
                    supportedValues.ToEquatableArray(),
                    SymbolSpecs(),
                    BindingOrder(),
                    embedding.Spec,
                    specBlocks.ToEquatableArray(),
                    finalNorm.Spec,
                    lmHead.Spec,
                    levels?.Spec);
            }
            return Result(spec, classNameLocation, (architectures ?? new List<NamedLocation>()).ToEquatableArray());
        }

        private static EquatableArray<string> Names(List<NamedLocation> named)
        {
            var names = new List<string>();
            foreach (var item in named)
                names.Add(item.Name);
            return names.ToEquatableArray();
        }

        private string? ReadClassName(JsonNode? node)
        {
            string? name = ReadString(node, "\"model\"");
            if (name is null)
                return null;
            if (!Naming.IsClassName(name) || Naming.IsKeyword(name))
            {
                Report(DiagnosticDescriptors.InvalidValue, node!,
                    $"\"model\" must be a PascalCase C# class name (ASCII letters, digits and underscores, starting with a capital letter), found \"{name}\"");
                return null;
            }
            return name;
        }

        private string? ReadNamespace(JsonNode node)
        {
            string? name = ReadString(node, "\"namespace\"");
            if (name is null)
                return null;
            if (!Naming.IsNamespace(name))
            {
                Report(DiagnosticDescriptors.InvalidValue, node,
                    $"\"namespace\" must be a C# namespace (identifiers separated by dots, no keywords), found \"{name}\"");
                return null;
            }
            return name;
        }

        private List<NamedLocation>? ReadArchitectures(JsonNode? node)
        {
            if (node is null)
                return null;
            if (node is not JsonArray array)
            {
                Report(DiagnosticDescriptors.InvalidValue, node, $"\"architectures\" must be an array of strings such as [\"LlamaForCausalLM\"], found {node.Describe()}");
                return null;
            }
            if (array.Items.Count == 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, node, "\"architectures\" must list at least one config.json architecture name");
                return null;
            }
            var result = new List<NamedLocation>();
            bool valid = true;
            foreach (var item in array.Items)
            {
                string? name = ReadString(item, "an \"architectures\" entry");
                if (name is null)
                {
                    valid = false;
                    continue;
                }
                if (name.Trim().Length == 0)
                {
                    Report(DiagnosticDescriptors.InvalidValue, item, "an \"architectures\" entry must not be empty");
                    valid = false;
                    continue;
                }
                var duplicate = result.Find(a => a.Name == name);
                if (duplicate is not null)
                {
                    Report(DiagnosticDescriptors.DuplicateName, item,
                        $"architecture \"{name}\" is listed twice (first at line {duplicate.Location.StartLine + 1})");
                    continue;
                }
                result.Add(new NamedLocation(name, At(item)));
            }
            return valid ? result : null;
        }

        /// <summary>
        /// "supported_config_values": config.json keys mapped to the values the model implements, e.g.
        /// {"hidden_act": ["swish", "silu"], "feature_map": [null]}. Each value is a JSON string, number, true,
        /// false or null, kept as JSON text.
        /// </summary>
        private List<SupportedConfigValue>? ReadSupportedConfigValues(JsonNode? node)
        {
            var rules = new List<SupportedConfigValue>();
            if (node is null)
                return rules;
            var reader = ObjectOf(node, "\"supported_config_values\"", "mapping config.json keys to the values the model supports");
            if (reader is null)
                return null;
            bool valid = true;
            foreach (var property in reader.Json.Properties)
            {
                string what = $"\"{property.Name}\" of \"supported_config_values\"";
                if (reader.Property(property.Name) != property)
                    continue; // a repeated key, already reported
                if (property.Value is not JsonArray { Items.Count: > 0 } array)
                {
                    Report(DiagnosticDescriptors.InvalidValue, property.Value, $"{what} must be a non-empty array of the values config.json may hold (strings, numbers, true, false, null), found {property.Value.Describe()}");
                    valid = false;
                    continue;
                }
                var values = new List<string>();
                foreach (var item in array.Items)
                {
                    string? json = item switch
                    {
                        // A C# string literal of Naming's escapes (\", \\, \uXXXX) is also a JSON string.
                        JsonString text => Naming.StringLiteral(text.Value),
                        JsonNumber number => number.Text,
                        JsonLiteral { Kind: JsonKind.True } => "true",
                        JsonLiteral { Kind: JsonKind.False } => "false",
                        JsonLiteral { Kind: JsonKind.Null } => "null",
                        _ => null,
                    };
                    if (json is null)
                    {
                        Report(DiagnosticDescriptors.InvalidValue, item, $"{what}: each value must be a string, a number, true, false or null, found {item.Describe()}");
                        valid = false;
                    }
                    else
                    {
                        values.Add(json);
                    }
                }
                rules.Add(new SupportedConfigValue(property.Name, values.ToEquatableArray()));
            }
            return valid ? rules : null;
        }

        // ---- Values -------------------------------------------------------------------------------------------

        /// <summary>A string value, or null after an HZ0007 when the node holds something else.</summary>
        internal string? ReadString(JsonNode? node, string what)
        {
            if (node is null)
                return null;
            if (node is JsonString text)
                return text.Value;
            Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a string, found {node.Describe()}");
            return null;
        }

        /// <summary>A name of the spec (node, block group, embedding, ...), which also becomes a C# name.</summary>
        internal string? ReadName(JsonNode? node, string what)
        {
            string? name = ReadString(node, what);
            if (name is null)
                return null;
            if (!Naming.IsSpecName(name))
            {
                Report(DiagnosticDescriptors.InvalidValue, node!,
                    $"{what} must be a name of ASCII letters, digits and underscores that starts with a letter (it becomes a C# name), found \"{name}\"");
                return null;
            }
            return name;
        }

        /// <summary>A tensor name (or a name relative to a block's prefix): non-empty and without placeholders.</summary>
        internal string? ReadTensorName(JsonNode? node, string what)
        {
            string? name = ReadString(node, what);
            if (name is null)
                return null;
            if (name.Length == 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, node!, $"{what} must not be empty");
                return null;
            }
            if (name.IndexOf('{') >= 0 || name.IndexOf('}') >= 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, node!,
                    $"{what} is \"{name}\", but placeholders such as {{layer}} are only allowed in a block group's \"prefix\"");
                return null;
            }
            return name;
        }

        // ---- Reporting ----------------------------------------------------------------------------------------

        internal void Report(DiagnosticDescriptor descriptor, JsonNode node, params string[] arguments) =>
            Report(descriptor, node.Start, node.End - node.Start, arguments);

        internal void ReportAtName(DiagnosticDescriptor descriptor, JsonProperty property, params string[] arguments) =>
            Report(descriptor, property.NameStart, property.NameEnd - property.NameStart, arguments);

        internal void Report(DiagnosticDescriptor descriptor, int start, int length, params string[] arguments) =>
            _diagnostics.Add(new DiagnosticInfo(descriptor.Id, At(start, length), new EquatableArray<string>(arguments)));

        internal LocationInfo At(JsonNode node) => At(node.Start, node.End - node.Start);

        internal LocationInfo At(int start, int length)
        {
            var (startLine, startColumn) = _lines.Position(start);
            var (endLine, endColumn) = _lines.Position(start + length);
            return new LocationInfo(_path, start, length, startLine, startColumn, endLine, endColumn);
        }

        /// <summary>One-based line of an offset, for messages that point at a second place.</summary>
        internal int LineOf(int offset) => _lines.Position(offset).Line + 1;
    }
}
