using System.Collections.Generic;
using Horizon.Generators.Json;
using Horizon.Generators.Model;

namespace Horizon.Generators.Parser
{
    // The model's parts: embedding, block groups and their nodes, final norm, head, and the C# names they become.
    internal sealed partial class SpecParser
    {
        private delegate NodeSpec? NodeReader(SpecParser parser, ObjectReader reader, string name);

        private sealed class NodeKind
        {
            public NodeKind(string name, NodeRole role, NodeReader read)
            {
                Name = name;
                Role = role;
                Read = read;
            }

            public string Name { get; }

            public NodeRole Role { get; }

            public NodeReader Read { get; }
        }

        /// <summary>
        /// Every node kind, with the slot it fits and the method that reads its properties. A new kind (gla,
        /// sliding_window_attention, hyena, moe, ...) is a row here, a record in Model/ModelSpec.cs and an emitter
        /// in Emitter/NodeEmitters.cs; nothing else in the parser changes.
        /// </summary>
        private static readonly NodeKind[] Kinds =
        {
            new NodeKind(NodeKinds.RmsNorm, NodeRole.Norm, (parser, reader, name) => parser.ReadRmsNorm(reader, name)),
            new NodeKind(NodeKinds.LayerNorm, NodeRole.Norm, (parser, reader, name) => parser.ReadLayerNorm(reader, name)),
            new NodeKind(NodeKinds.Attention, NodeRole.Mixer, (parser, reader, name) => parser.ReadAttention(reader, name)),
            new NodeKind(NodeKinds.GptNeoXAttention, NodeRole.Mixer, (parser, reader, name) => parser.ReadGptNeoXAttention(reader, name)),
            new NodeKind(NodeKinds.Gla, NodeRole.Mixer, (parser, reader, name) => parser.ReadGla(reader, name)),
            new NodeKind(NodeKinds.LinearAttention, NodeRole.Mixer, (parser, reader, name) => parser.ReadLinearAttention(reader, name)),
            new NodeKind(NodeKinds.SlidingWindowAttention, NodeRole.Mixer, (parser, reader, name) => parser.ReadSlidingWindowAttention(reader, name)),
            new NodeKind(NodeKinds.CcaAttention, NodeRole.Mixer, (parser, reader, name) => parser.ReadCcaAttention(reader, name)),
            new NodeKind(NodeKinds.AgentAttention, NodeRole.Mixer, (parser, reader, name) => parser.ReadAgentAttention(reader, name)),
            new NodeKind(NodeKinds.Hyena, NodeRole.Mixer, (parser, reader, name) => parser.ReadHyena(reader, name)),
            new NodeKind(NodeKinds.SwiGluMlp, NodeRole.Mlp, (parser, reader, name) => parser.ReadSwiGluMlp(reader, name)),
            new NodeKind(NodeKinds.GeluMlp, NodeRole.Mlp, (parser, reader, name) => parser.ReadGeluMlp(reader, name)),
            new NodeKind(NodeKinds.Moe, NodeRole.Mlp, (parser, reader, name) => parser.ReadMoe(reader, name)),
        };

        private sealed class ParsedNode
        {
            public ParsedNode(NodeSpec spec, JsonNode nameNode)
            {
                Spec = spec;
                NameNode = nameNode;
            }

            public NodeSpec Spec { get; }

            public JsonNode NameNode { get; }
        }

        private sealed class ParsedBlock
        {
            public ParsedBlock(BlockGroupSpec spec, JsonNode nameNode, ParsedNode[] nodes)
            {
                Spec = spec;
                NameNode = nameNode;
                Nodes = nodes;
            }

            public BlockGroupSpec Spec { get; }

            public JsonNode NameNode { get; }

            public ParsedNode[] Nodes { get; }
        }

        private sealed class ParsedEmbedding
        {
            public ParsedEmbedding(EmbeddingSpec spec, JsonNode nameNode)
            {
                Spec = spec;
                NameNode = nameNode;
            }

            public EmbeddingSpec Spec { get; }

            public JsonNode NameNode { get; }
        }

        private sealed class ParsedLmHead
        {
            public ParsedLmHead(LmHeadSpec spec, JsonNode nameNode)
            {
                Spec = spec;
                NameNode = nameNode;
            }

            public LmHeadSpec Spec { get; }

            public JsonNode NameNode { get; }
        }

        /// <summary>The embedding's dim once read: the width every node reads and writes (for checks of nodes' sizes).</summary>
        private IntValue? _modelWidth;

        private ObjectReader? ObjectOf(JsonNode? node, string what, string shape)
        {
            if (node is null)
                return null;
            if (node is JsonObject json)
                return new ObjectReader(this, json, what);
            Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be an object {shape}, found {node.Describe()}");
            return null;
        }

        // ---- Embedding and head -------------------------------------------------------------------------------

        /// <param name="what">How messages name it: "\"embedding\"", or the token decoder's.</param>
        private ParsedEmbedding? ReadEmbedding(JsonNode? node, string what)
        {
            var reader = ObjectOf(node, what, "{\"name\", \"weight\", \"vocab\", \"dim\"}");
            if (reader is null)
                return null;
            var nameNode = reader.Required("name");
            string? name = ReadName(nameNode, $"\"name\" of {what}");
            string? weight = ReadTensorName(reader.Required("weight", " (the tensor name of the [vocab, dim] table)"), $"\"weight\" of {what}");
            var vocab = ReadSize(reader.Required("vocab", " (the vocabulary size)"), $"\"vocab\" of {what}");
            var dim = ReadSize(reader.Required("dim", " (the model width, used by every node)"), $"\"dim\" of {what}");
            reader.ReportUnknown();
            _modelWidth = dim;
            if (name is null || weight is null || vocab is null || dim is null)
                return null;
            return new ParsedEmbedding(new EmbeddingSpec(name, Naming.ToPascalCase(name), weight, vocab, dim), nameNode!);
        }

        private ParsedLmHead? ReadLmHead(JsonNode? node)
        {
            var reader = ObjectOf(node, "\"lm_head\"", "{\"name\", \"weight\", \"tied\"}");
            if (reader is null)
                return null;
            var nameNode = reader.Required("name");
            string? name = ReadName(nameNode, "\"name\" of \"lm_head\"");
            var tiedNode = reader.Optional("tied");
            var tied = tiedNode is null ? FlagValue.False : ReadFlag(tiedNode, "\"tied\" of \"lm_head\"");
            // A head that is always tied reads the embedding table, so it needs no tensor of its own.
            var weightNode = tied is { IsAlwaysTrue: true }
                ? reader.Optional("weight")
                : reader.Required("weight", " (the [vocab, dim] tensor; only a head with \"tied\": true can leave it out)");
            string? weight = weightNode is null ? null : ReadTensorName(weightNode, "\"weight\" of \"lm_head\"");
            reader.ReportUnknown();
            if (name is null || tied is null || (weight is null && !tied.IsAlwaysTrue))
                return null;
            return new ParsedLmHead(new LmHeadSpec(name, Naming.ToPascalCase(name), weight, tied), nameNode!);
        }

        // ---- Two levels: block decoder and token decoder ----------------------------------------------------------

        private sealed class ParsedLevels
        {
            public ParsedLevels(TwoLevelSpec spec, JsonNode embedderName, List<ParsedBlock> blockBlocks, ParsedNode blockFinalNorm, JsonNode prefixName,
                ParsedEmbedding tokenEmbedding, List<ParsedBlock> tokenBlocks, ParsedNode tokenFinalNorm)
            {
                Spec = spec;
                EmbedderName = embedderName;
                BlockBlocks = blockBlocks;
                BlockFinalNorm = blockFinalNorm;
                PrefixName = prefixName;
                TokenEmbedding = tokenEmbedding;
                TokenBlocks = tokenBlocks;
                TokenFinalNorm = tokenFinalNorm;
            }

            public TwoLevelSpec Spec { get; }

            public JsonNode EmbedderName { get; }

            public List<ParsedBlock> BlockBlocks { get; }

            public ParsedNode BlockFinalNorm { get; }

            public JsonNode PrefixName { get; }

            public ParsedEmbedding TokenEmbedding { get; }

            public List<ParsedBlock> TokenBlocks { get; }

            public ParsedNode TokenFinalNorm { get; }
        }

        /// <summary>The kind of the block decoder's embedder: L lookups concatenated (the Block Transformer's lookup embedder).</summary>
        public const string LookupConcat = "lookup_concat";

        /// <summary>
        /// "levels": {"block_decoder": {"embedding" (lookup_concat), "blocks", "final_norm"}, "token_decoder":
        /// {"embedding", "prefix_projection", "blocks", "final_norm"}}. Each level's blocks are read after its
        /// embedding, so their compile-time checks use that level's width.
        /// </summary>
        private ParsedLevels? ReadLevels(JsonNode node)
        {
            var reader = ObjectOf(node, "\"levels\"", "{\"block_decoder\", \"token_decoder\"}");
            if (reader is null)
                return null;

            ParsedLookupEmbedder? embedder = null;
            List<ParsedBlock>? blockBlocks = null;
            ParsedNode? blockFinalNorm = null;
            var blockReader = ObjectOf(reader.Required("block_decoder", " (the level that runs over blocks: \"embedding\", \"blocks\", \"final_norm\")"),
                "\"block_decoder\"", "{\"embedding\", \"blocks\", \"final_norm\"}");
            if (blockReader is not null)
            {
                embedder = ReadLookupEmbedder(blockReader.Required("embedding", " (the block embedder, {\"kind\": \"lookup_concat\", ...})"));
                blockBlocks = ReadBlocks(blockReader.Required("blocks"));
                blockFinalNorm = ReadNode(blockReader.Required("final_norm"), NodeRole.Norm, "\"final_norm\"", null);
                blockReader.ReportUnknown();
            }

            ParsedEmbedding? tokenEmbedding = null;
            ParsedPrefix? prefix = null;
            List<ParsedBlock>? tokenBlocks = null;
            ParsedNode? tokenFinalNorm = null;
            var tokenReader = ObjectOf(reader.Required("token_decoder", " (the level that runs inside a block: \"embedding\", \"prefix_projection\", \"blocks\", \"final_norm\")"),
                "\"token_decoder\"", "{\"embedding\", \"prefix_projection\", \"blocks\", \"final_norm\"}");
            if (tokenReader is not null)
            {
                tokenEmbedding = ReadEmbedding(tokenReader.Required("embedding"), "\"embedding\" of \"token_decoder\"");
                prefix = ReadPrefixProjection(tokenReader.Required("prefix_projection", " (the projection of the previous block's context embedding into prefix rows)"));
                tokenBlocks = ReadBlocks(tokenReader.Required("blocks"));
                tokenFinalNorm = ReadNode(tokenReader.Required("final_norm"), NodeRole.Norm, "\"final_norm\"", null);
                tokenReader.ReportUnknown();
            }
            reader.ReportUnknown();

            if (embedder is null || blockBlocks is null || blockFinalNorm is null || tokenEmbedding is null || prefix is null || tokenBlocks is null || tokenFinalNorm is null)
                return null;
            var blockGroups = new List<BlockGroupSpec>();
            foreach (var block in blockBlocks)
                blockGroups.Add(block.Spec);
            var spec = new TwoLevelSpec(embedder.Spec, blockGroups.ToEquatableArray(), blockFinalNorm.Spec, prefix.Spec);
            return new ParsedLevels(spec, embedder.NameNode, blockBlocks, blockFinalNorm, prefix.NameNode, tokenEmbedding, tokenBlocks, tokenFinalNorm);
        }

        private sealed class ParsedLookupEmbedder
        {
            public ParsedLookupEmbedder(LookupEmbedderSpec spec, JsonNode nameNode)
            {
                Spec = spec;
                NameNode = nameNode;
            }

            public LookupEmbedderSpec Spec { get; }

            public JsonNode NameNode { get; }
        }

        private sealed class ParsedPrefix
        {
            public ParsedPrefix(PrefixProjectionSpec spec, JsonNode nameNode)
            {
                Spec = spec;
                NameNode = nameNode;
            }

            public PrefixProjectionSpec Spec { get; }

            public JsonNode NameNode { get; }
        }

        private ParsedLookupEmbedder? ReadLookupEmbedder(JsonNode? node)
        {
            const string what = "\"embedding\" of \"block_decoder\"";
            var reader = ObjectOf(node, what, "{\"kind\": \"lookup_concat\", \"name\", \"weight\", \"vocab\", \"dim\", \"block_length\", \"pad_token\"}");
            if (reader is null)
                return null;
            var kindNode = reader.Required("kind", $" (the block embedder's kind: \"{LookupConcat}\")");
            string? kind = ReadString(kindNode, $"\"kind\" of {what}");
            if (kind is not null && kind != LookupConcat)
            {
                Report(DiagnosticDescriptors.InvalidValue, kindNode!,
                    $"\"kind\" of {what} must be \"{LookupConcat}\" (a lookup per token of the block, concatenated: the Block Transformer's lookup embedder), found \"{kind}\"");
                kind = null;
            }
            var nameNode = reader.Required("name");
            string? name = ReadName(nameNode, $"\"name\" of {what}");
            string? weight = ReadTensorName(reader.Required("weight", " (the tensor name of the [vocab, dim / block_length] table)"), $"\"weight\" of {what}");
            var vocab = ReadSize(reader.Required("vocab", " (the vocabulary size)"), $"\"vocab\" of {what}");
            var dim = ReadSize(reader.Required("dim", " (the block decoder's width: a block embedding, block_length lookups side by side)"), $"\"dim\" of {what}");
            var blockLengthNode = reader.Required("block_length", " (L: tokens per block)");
            var blockLength = ReadSize(blockLengthNode, $"\"block_length\" of {what}");
            int? padToken = null;
            bool padValid = true;
            if (reader.Optional("pad_token") is JsonNode padNode)
            {
                if (padNode is JsonNumber { Integer: long pad } && pad >= 0 && pad <= int.MaxValue)
                    padToken = (int)pad;
                else if (padNode is not JsonString { Value: "config" })
                {
                    Report(DiagnosticDescriptors.InvalidValue, padNode,
                        $"\"pad_token\" of {what} must be \"config\" (config.json's pad_token_id, else eos_token_id, else 0) or a token id (a whole number ≥ 0), found {Found(padNode)}");
                    padValid = false;
                }
            }
            reader.ReportUnknown();
            _modelWidth = dim;

            bool divides = true;
            if (dim is not null && blockLength is not null && Known(dim) is long d && Known(blockLength) is long l && d % l != 0)
            {
                Report(DiagnosticDescriptors.SizeDoesNotDivide, blockLengthNode!,
                    $"{what} concatenates {Describe(blockLength, l)} lookups into a block embedding of width {Describe(dim, d)}, which they do not divide evenly");
                divides = false;
            }
            if (kind is null || name is null || weight is null || vocab is null || dim is null || blockLength is null || !padValid || !divides)
                return null;
            return new ParsedLookupEmbedder(new LookupEmbedderSpec(name, Naming.ToPascalCase(name), weight, vocab, dim, blockLength, padToken), nameNode!);
        }

        private ParsedPrefix? ReadPrefixProjection(JsonNode? node)
        {
            const string what = "\"prefix_projection\" of \"token_decoder\"";
            var reader = ObjectOf(node, what, "{\"name\", \"prefix_tokens\", \"weight\", \"bias\"}");
            if (reader is null)
                return null;
            var nameNode = reader.Required("name");
            string? name = ReadName(nameNode, $"\"name\" of {what}");
            var prefixTokens = ReadSize(reader.Required("prefix_tokens", " (R: the prefix rows one context embedding becomes)"), $"\"prefix_tokens\" of {what}");
            string? weight = ReadTensorName(reader.Required("weight", " (the tensor name of the [prefix_tokens · token dim, block dim] projection)"), $"\"weight\" of {what}");
            var biasNode = reader.Optional("bias");
            string? bias = biasNode is null ? null : ReadTensorName(biasNode, $"\"bias\" of {what}");
            reader.ReportUnknown();
            if (name is null || prefixTokens is null || weight is null || (biasNode is not null && bias is null))
                return null;
            return new ParsedPrefix(new PrefixProjectionSpec(name, Naming.ToPascalCase(name), prefixTokens, weight, bias), nameNode!);
        }

        // ---- Block groups -------------------------------------------------------------------------------------

        private List<ParsedBlock>? ReadBlocks(JsonNode? node)
        {
            if (node is null)
                return null;
            if (node is not JsonArray array)
            {
                Report(DiagnosticDescriptors.InvalidValue, node, $"\"blocks\" must be an array of block groups, found {node.Describe()}");
                return null;
            }
            if (array.Items.Count == 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, node, "\"blocks\" must list at least one block group");
                return null;
            }
            var blocks = new List<ParsedBlock>();
            bool valid = true;
            for (int i = 0; i < array.Items.Count; i++)
            {
                _cancellation.ThrowIfCancellationRequested();
                var block = ReadBlock(array.Items[i], i);
                if (block is null)
                    valid = false;
                else
                    blocks.Add(block);
            }
            return valid ? blocks : null;
        }

        private ParsedBlock? ReadBlock(JsonNode node, int index)
        {
            var reader = ObjectOf(node, $"block group {index + 1}", "{\"name\", \"repeat\", \"prefix\", \"mixer_norm\", \"mixer\", \"mlp_norm\", \"mlp\"}");
            if (reader is null)
                return null;
            var nameNode = reader.Required("name");
            string? name = ReadName(nameNode, $"\"name\" of {reader.What}");
            if (name is not null)
                reader.What = $"block group '{name}'";
            var repeat = ReadSize(reader.Required("repeat", " (how many layers the group has)"), $"\"repeat\" of {reader.What}");
            string? prefix = ReadPrefix(reader.Required("prefix", " (the tensor name prefix of a layer, with {layer} where the index goes)"), reader.What);
            string owner = name ?? (index + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
            var mixerNorm = ReadNode(reader.Required("mixer_norm"), NodeRole.Norm, "mixer_norm", owner);
            var mixer = ReadNode(reader.Required("mixer"), NodeRole.Mixer, "mixer", owner);
            var mlpNorm = ReadNode(reader.Required("mlp_norm"), NodeRole.Norm, "mlp_norm", owner);
            var mlp = ReadNode(reader.Required("mlp"), NodeRole.Mlp, "mlp", owner);
            // GPT-J/GPT-NeoX: x + mixer(mixer_norm(x)) + mlp(mlp_norm(x)), both branches reading the layer's input.
            var parallel = ReadOptionalFlag(reader, "parallel_residual", reader.What);
            reader.ReportUnknown();
            if (name is null || repeat is null || prefix is null || mixerNorm is null || mixer is null || mlpNorm is null || mlp is null || parallel is null)
                return null;
            var spec = new BlockGroupSpec(name, Naming.ToPascalCase(name), repeat, prefix, mixerNorm.Spec, mixer.Spec, mlpNorm.Spec, mlp.Spec, parallel);
            return new ParsedBlock(spec, nameNode!, new[] { mixerNorm, mixer, mlpNorm, mlp });
        }

        private string? ReadPrefix(JsonNode? node, string owner)
        {
            string what = $"\"prefix\" of {owner}";
            string? prefix = ReadString(node, what);
            if (prefix is null)
                return null;
            if (prefix.IndexOf(LayerPlaceholder, System.StringComparison.Ordinal) < 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, node!,
                    $"{what} is \"{prefix}\", which has no {LayerPlaceholder}; the layer index must appear in every layer's tensor names (e.g. \"model.layers.{LayerPlaceholder}.\")");
                return null;
            }
            string rest = prefix.Replace(LayerPlaceholder, "");
            if (rest.IndexOf('{') >= 0 || rest.IndexOf('}') >= 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, node!, $"{what} is \"{prefix}\"; {LayerPlaceholder} is the only placeholder");
                return null;
            }
            return prefix;
        }

        /// <summary>Where the global layer index goes in a block group's prefix.</summary>
        public const string LayerPlaceholder = "{layer}";

        // ---- Nodes --------------------------------------------------------------------------------------------

        /// <param name="slot">The JSON key that holds the node: mixer_norm, mixer, mlp_norm, mlp or final_norm.</param>
        /// <param name="group">The block group's name, or null for final_norm.</param>
        private ParsedNode? ReadNode(JsonNode? node, NodeRole role, string slot, string? group)
        {
            string owner = group is null ? "" : $" of block group '{group}'";
            var reader = ObjectOf(node, slot + owner, "{\"kind\", \"name\", ...}");
            if (reader is null)
                return null;
            var kindNode = reader.Required("kind", $" ({NodeKinds.RoleWithArticle(role)} kind: {KindList(role)})");
            var nameNode = reader.Required("name");
            string? name = ReadName(nameNode, $"\"name\" of {reader.What}");
            if (name is not null)
                reader.What = $"{slot} '{name}'{owner}";
            string? kindName = ReadString(kindNode, $"\"kind\" of {reader.What}");
            if (kindName is null)
                return null;

            NodeKind? kind = null;
            foreach (var candidate in Kinds)
            {
                if (candidate.Name == kindName)
                    kind = candidate;
            }
            string roleName = NodeKinds.RoleName(role);
            if (kind is null)
            {
                var sameRole = new List<string>();
                foreach (var candidate in Kinds)
                {
                    if (candidate.Role == role)
                        sameRole.Add(candidate.Name);
                }
                string? suggestion = Suggestions.Closest(kindName, sameRole);
                Report(DiagnosticDescriptors.UnknownNodeKind, kindNode!,
                    $"unknown {roleName} kind '{kindName}' in {reader.What} (known {roleName} kinds: {KindList(role)}" +
                    (suggestion is null ? ")" : $"; did you mean '{suggestion}'?)"));
                return null;
            }
            if (kind.Role != role)
            {
                Report(DiagnosticDescriptors.UnknownNodeKind, kindNode!,
                    $"'{kindName}' is {NodeKinds.RoleWithArticle(kind.Role)} kind, but {reader.What} takes {NodeKinds.RoleWithArticle(role)} kind ({KindList(role)})");
                return null;
            }
            var spec = kind.Read(this, reader, name ?? "");
            reader.ReportUnknown();
            return name is null || spec is null ? null : new ParsedNode(spec, nameNode!);
        }

        private static string KindList(NodeRole role)
        {
            var names = new List<string>();
            foreach (var kind in Kinds)
            {
                if (kind.Role == role)
                    names.Add(kind.Name);
            }
            return string.Join(", ", names);
        }

        private NodeSpec? ReadRmsNorm(ObjectReader reader, string name)
        {
            string? weight = ReadTensorName(reader.Required("weight", " (the tensor name of the scale, under the block's prefix)"), $"\"weight\" of {reader.What}");
            var eps = ReadFloat(reader.Required("eps", " (added to the mean square; a number or a float symbol)"), $"\"eps\" of {reader.What}");
            return weight is null || eps is null ? null : new RmsNormSpec(name, Naming.ToPascalCase(name), weight, eps);
        }

        private NodeSpec? ReadAttention(ObjectReader reader, string name) =>
            ReadAttentionProjections(reader, name, withRope: true, out _);

        /// <summary>
        /// The properties an <c>attention</c> node and its variants share: heads, kv_heads, head_dim, the bias flags,
        /// rope (unless <paramref name="withRope"/> is false: then none) and the query/key/value/output weights, plus
        /// the variant's <paramref name="extraWeights"/> roles in the same "weights" object.
        /// </summary>
        private AttentionSpec? ReadAttentionProjections(ObjectReader reader, string name, bool withRope, out Dictionary<string, string[]>? extra, params string[] extraWeights)
        {
            string what = reader.What;
            extra = null;
            var headsNode = reader.Required("heads", " (the number of query heads)");
            var heads = ReadSize(headsNode, $"\"heads\" of {what}");
            // Without kv_heads every query head has its own key/value head (multi-head attention).
            var kvHeadsNode = reader.Optional("kv_heads");
            var kvHeads = kvHeadsNode is null ? heads : ReadSize(kvHeadsNode, $"\"kv_heads\" of {what}");
            var headDim = ReadSize(reader.Required("head_dim", " (the width of one head)"), $"\"head_dim\" of {what}");
            var qkvBias = ReadOptionalFlag(reader, "qkv_bias", what);
            var outputBias = ReadOptionalFlag(reader, "output_bias", what);
            RopeMode? rope = withRope ? ReadRope(reader.Required("rope", " (\"config\" or \"none\")"), what) : RopeMode.None;
            var roles = new List<WeightRole> { WeightRole.Required("query"), WeightRole.Required("key"), WeightRole.Required("value"), WeightRole.Required("output") };
            foreach (string role in extraWeights)
                roles.Add(WeightRole.Required(role));
            var weights = ReadWeightNames(reader.Required("weights"), what, roles);

            if (heads is not null && kvHeads is not null && kvHeadsNode is not null)
                CheckHeadsDivide(heads, kvHeads, kvHeadsNode, what);

            if (heads is null || kvHeads is null || headDim is null || qkvBias is null || outputBias is null || rope is null || weights is null)
                return null;
            extra = weights;
            return new AttentionSpec(name, Naming.ToPascalCase(name), heads, kvHeads, headDim, qkvBias, outputBias, rope.Value,
                weights["query"][0], weights["key"][0], weights["value"][0], weights["output"][0]);
        }

        /// <summary>Query heads are shared out evenly over key/value heads, so kv_heads must divide heads.</summary>
        private void CheckHeadsDivide(IntValue heads, IntValue kvHeads, JsonNode kvHeadsNode, string what)
        {
            if (Known(heads) is not long h || Known(kvHeads) is not long kv)
                return;
            if (kv > h)
                Report(DiagnosticDescriptors.SizeDoesNotDivide, kvHeadsNode,
                    $"{what} has more key/value heads ({Describe(kvHeads, kv)}) than query heads ({Describe(heads, h)})");
            else if (h % kv != 0)
                Report(DiagnosticDescriptors.SizeDoesNotDivide, kvHeadsNode,
                    $"{what} has {Describe(heads, h)} query heads, which do not divide evenly over {Describe(kvHeads, kv)} key/value heads");
        }

        private FlagValue? ReadOptionalFlag(ObjectReader reader, string property, string what, bool defaultValue = false)
        {
            var node = reader.Optional(property);
            return node is null ? new FlagValue(defaultValue, null) : ReadFlag(node, $"\"{property}\" of {what}");
        }

        private RopeMode? ReadRope(JsonNode? node, string what)
        {
            string? rope = ReadString(node, $"\"rope\" of {what}");
            switch (rope)
            {
                case null:
                    return null;
                case "config":
                    return RopeMode.Config;
                case "none":
                    return RopeMode.None;
                default:
                    Report(DiagnosticDescriptors.InvalidValue, node!,
                        $"\"rope\" of {what} must be \"config\" (rotary embedding as config.json describes it) or \"none\", found \"{rope}\"");
                    return null;
            }
        }

        private NodeSpec? ReadSwiGluMlp(ObjectReader reader, string name)
        {
            string what = reader.What;
            var intermediate = ReadSize(reader.Required("intermediate", " (the width of the gate and up projections)"), $"\"intermediate\" of {what}");
            var weights = ReadWeightNames(reader.Required("weights"), what, new[]
            {
                WeightRole.Required("gate"), WeightRole.Required("up"), WeightRole.Required("down"), WeightRole.Optional("fused_gate_up"),
            });
            if (intermediate is null || weights is null)
                return null;
            return new SwiGluMlpSpec(name, Naming.ToPascalCase(name), intermediate, weights["gate"][0], weights["up"][0], weights["down"][0],
                weights.TryGetValue("fused_gate_up", out var fused) ? fused[0] : null);
        }

        // ---- C# names -----------------------------------------------------------------------------------------

        private static readonly string[] ObjectMembers = { "Equals", "GetHashCode", "ToString", "GetType", "MemberwiseClone", "Finalize", "ReferenceEquals" };
        private static readonly string[] RecordMembers = { "EqualityContract", "Deconstruct", "PrintMembers" };
        private static readonly string[] ModelMembers = { "Architectures", "Sizes", "Info", "VocabSize", "Load", "CreateState", "Forward", "Dispose", "Dimensions", "State" };

        /// <summary>The State class has a property per block group next to these.</summary>
        private static readonly string[] StateMembers = { "Length", "Capacity", "Reset", "Advance", "Owner", "ResidualHook", "LayerCount", "CopyFrom", "Clone" };

        /// <summary>What the class and the State class of a two-level spec have on top.</summary>
        private static readonly string[] TwoLevelModelMembers = { "PadTokenId", "BlockLength", "PrefixTokens" };

        private static readonly string[] TwoLevelStateMembers =
        {
            "Length", "Capacity", "Reset", "Advance", "Owner", "ResidualHook", "LayerCount", "CopyFrom", "Clone",
            "FirstBlockPadding", "BlockLength", "StreamLength", "Blocks", "LocalLength", "PendingTokens",
        };

        /// <summary>
        /// Names become C# members: two spec names that turn into the same C# name (self_attn and selfAttn), or a
        /// name the generated code already uses (a block group called "state"), would not compile. Say so here,
        /// against the spec, instead of as a C# error in a generated file.
        /// </summary>
        private void CheckMemberNames(string className, JsonNode classNode, ParsedEmbedding embedding, List<ParsedBlock> blocks, ParsedNode finalNorm, ParsedLmHead lmHead,
            ParsedLevels? levels)
        {
            var model = levels is null
                ? new MemberScope(this, $"class {className}", ObjectMembers, ModelMembers, new[] { className })
                : new MemberScope(this, $"class {className}", ObjectMembers, ModelMembers, TwoLevelModelMembers, new[] { className });
            string[] stateMembers = levels is null ? StateMembers : TwoLevelStateMembers;
            void AddGroups(List<ParsedBlock> groups)
            {
                foreach (var block in groups)
                {
                    string name = block.Spec.Name;
                    // One report per clash: the Weights and State types follow from the group's name.
                    if (model.Add(block.Spec.PropertyName, name, "block group", block.NameNode, stateMembers)
                        && model.Add(block.Spec.PropertyName + "Weights", name, "block group", block.NameNode))
                        model.Add(block.Spec.PropertyName + "State", name, "block group", block.NameNode);
                }
            }
            var allBlocks = new List<ParsedBlock>();
            if (levels is not null)
            {
                // Both levels are members of one class: their names share it.
                model.Add(levels.Spec.Embedder.PropertyName, levels.Spec.Embedder.Name, "embedding", levels.EmbedderName);
                AddGroups(levels.BlockBlocks);
                model.Add(levels.BlockFinalNorm.Spec.PropertyName, levels.BlockFinalNorm.Spec.Name, "final_norm", levels.BlockFinalNorm.NameNode);
                model.Add(levels.Spec.Prefix.PropertyName, levels.Spec.Prefix.Name, "prefix_projection", levels.PrefixName);
                allBlocks.AddRange(levels.BlockBlocks);
            }
            model.Add(embedding.Spec.PropertyName, embedding.Spec.Name, "embedding", embedding.NameNode);
            AddGroups(blocks);
            allBlocks.AddRange(blocks);
            model.Add(finalNorm.Spec.PropertyName, finalNorm.Spec.Name, "final_norm", finalNorm.NameNode);
            model.Add(lmHead.Spec.PropertyName, lmHead.Spec.Name, "lm_head", lmHead.NameNode);

            var dimensions = new MemberScope(this, "record Dimensions", ObjectMembers, RecordMembers, new[] { "Dimensions" });
            foreach (var symbol in _declarationOrder)
                dimensions.Add(Naming.ToPascalCase(symbol.Name), symbol.Name, "symbol", symbol.Property.NameStart, symbol.Property.NameEnd - symbol.Property.NameStart);

            foreach (var block in allBlocks)
            {
                string weights = block.Spec.PropertyName + "Weights", state = block.Spec.PropertyName + "State";
                var nodes = new MemberScope(this, $"{weights} and {state}", ObjectMembers, RecordMembers, new[] { weights, state, "Reset", "CopyFrom" });
                foreach (var node in block.Nodes)
                    nodes.Add(node.Spec.PropertyName, node.Spec.Name, "node", node.NameNode);
            }
        }

        /// <summary>The C# names of one generated type, and which spec name claimed each.</summary>
        private sealed class MemberScope
        {
            private readonly SpecParser _parser;
            private readonly string _typeName;
            private readonly HashSet<string> _reserved = new HashSet<string>(System.StringComparer.Ordinal);
            private readonly Dictionary<string, (string Name, string What, int Start)> _claimed = new Dictionary<string, (string, string, int)>(System.StringComparer.Ordinal);

            public MemberScope(SpecParser parser, string typeName, params string[][] reserved)
            {
                _parser = parser;
                _typeName = typeName;
                foreach (var names in reserved)
                    _reserved.UnionWith(names);
            }

            public bool Add(string csharpName, string specName, string what, JsonNode at, string[]? alsoReserved = null) =>
                Add(csharpName, specName, what, at.Start, at.End - at.Start, alsoReserved);

            /// <summary>Claims <paramref name="csharpName"/>; false (after an HZ0005) when it is reserved or taken.</summary>
            public bool Add(string csharpName, string specName, string what, int start, int length, string[]? alsoReserved = null)
            {
                if (_reserved.Contains(csharpName) || (alsoReserved is not null && System.Array.IndexOf(alsoReserved, csharpName) >= 0))
                {
                    _parser.Report(DiagnosticDescriptors.DuplicateName, start, length,
                        $"{what} name '{specName}' becomes the C# name '{csharpName}', which the generated {_typeName} already uses; rename it");
                    return false;
                }
                if (_claimed.TryGetValue(csharpName, out var first))
                {
                    string message = first.Name == specName && first.What == what
                        ? $"{what} name '{specName}' is used twice (first at line {_parser.LineOf(first.Start)})"
                        : $"{what} name '{specName}' and {first.What} name '{first.Name}' (line {_parser.LineOf(first.Start)}) both become the C# name '{csharpName}' in {_typeName}";
                    _parser.Report(DiagnosticDescriptors.DuplicateName, start, length, message);
                    return false;
                }
                _claimed.Add(csharpName, (specName, what, start));
                return true;
            }
        }
    }
}
