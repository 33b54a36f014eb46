using System.Collections.Generic;
using Horizon.Generators.Json;
using Horizon.Generators.Model;

namespace Horizon.Generators.Parser
{
    // The readers of the node kinds beyond rms_norm, attention and swiglu_mlp (SpecParser.Nodes.cs), and the
    // "weights" object they share. Each reads its properties through the ObjectReader (HZ0003 for a missing one,
    // HZ0007 for an unknown one) and checks what it can at compile time: sizes that must divide (HZ0004) and values
    // the op refuses (HZ0007).
    internal sealed partial class SpecParser
    {
        /// <summary>One key of a "weights" object: required or optional, and whether a list of alternatives is allowed.</summary>
        private sealed class WeightRole
        {
            private WeightRole(string name, bool required, bool alternatives)
            {
                Name = name;
                IsRequired = required;
                AllowsAlternatives = alternatives;
            }

            public string Name { get; }

            public bool IsRequired { get; }

            /// <summary>The value may be a list of names: the first the checkpoint holds is bound.</summary>
            public bool AllowsAlternatives { get; }

            public static WeightRole Required(string name, bool alternatives = false) => new WeightRole(name, true, alternatives);

            public static WeightRole Optional(string name, bool alternatives = false) => new WeightRole(name, false, alternatives);

            /// <summary>Required unless the flag that uses it is the literal false.</summary>
            public static WeightRole RequiredUnlessOff(string name, FlagValue? flag, bool alternatives = false) =>
                new WeightRole(name, flag is null || !flag.IsAlwaysFalse, alternatives);
        }

        /// <summary>
        /// A "weights" object: a module name under the block's prefix per role (NAME.weight is bound, and NAME.bias
        /// where the kind has one). The result maps each role present to its name, or to its alternatives in order.
        /// </summary>
        private Dictionary<string, string[]>? ReadWeightNames(JsonNode? node, string owner, IReadOnlyList<WeightRole> roles)
        {
            var roleNames = new List<string>();
            foreach (var role in roles)
                roleNames.Add(role.Name);
            var reader = ObjectOf(node, $"\"weights\" of {owner}", "naming a linear layer per role (" + string.Join(", ", roleNames) + ")");
            if (reader is null)
                return null;
            var names = new Dictionary<string, string[]>(System.StringComparer.Ordinal);
            bool valid = true;
            foreach (var role in roles)
            {
                var value = role.IsRequired
                    ? reader.Required(role.Name, " (a linear layer: NAME.weight is bound)")
                    : reader.Optional(role.Name);
                if (value is null)
                {
                    valid &= !role.IsRequired;
                    continue;
                }
                string what = $"\"{role.Name}\" weight of {owner}";
                if (role.AllowsAlternatives && value is JsonArray array)
                {
                    var alternatives = new List<string>();
                    foreach (var item in array.Items)
                    {
                        if (ReadTensorName(item, $"an entry of {what}") is string alternative)
                            alternatives.Add(alternative);
                        else
                            valid = false;
                    }
                    if (array.Items.Count == 0)
                    {
                        Report(DiagnosticDescriptors.InvalidValue, value, $"{what} must list at least one name");
                        valid = false;
                    }
                    names[role.Name] = alternatives.ToArray();
                    continue;
                }
                if (ReadTensorName(value, role.AllowsAlternatives ? what + " (a name, or a list of names to try in order)" : what) is string name)
                    names[role.Name] = new[] { name };
                else
                    valid = false;
            }
            reader.ReportUnknown();
            return valid ? names : null;
        }

        private static string? Single(Dictionary<string, string[]> weights, string role) =>
            weights.TryGetValue(role, out var names) ? names[0] : null;

        // ---- Norms --------------------------------------------------------------------------------------------

        private NodeSpec? ReadLayerNorm(ObjectReader reader, string name)
        {
            string what = reader.What;
            string? weight = ReadTensorName(reader.Required("weight", " (the tensor name of the scale γ, under the block's prefix)"), $"\"weight\" of {what}");
            var biasNode = reader.Optional("bias");
            string? bias = biasNode is null ? null : ReadTensorName(biasNode, $"\"bias\" of {what}");
            var eps = ReadFloat(reader.Required("eps", " (added to the variance; a number or a float symbol)"), $"\"eps\" of {what}");
            if (weight is null || eps is null || (biasNode is not null && bias is null))
                return null;
            return new LayerNormSpec(name, Naming.ToPascalCase(name), weight, bias, eps);
        }

        // ---- Recurrent mixers: gla, linear_attention -------------------------------------------------------------

        private NodeSpec? ReadGla(ObjectReader reader, string name)
        {
            string what = reader.What;
            var headsNode = reader.Required("heads", " (the number of query heads)");
            var heads = ReadSize(headsNode, $"\"heads\" of {what}");
            var kvHeadsNode = reader.Optional("kv_heads");
            var kvHeads = kvHeadsNode is null ? heads : ReadSize(kvHeadsNode, $"\"kv_heads\" of {what}");
            var expandK = ReadFloat(reader.Required("expand_k", " (the query/key width as a fraction of dim: H·d_k = int(dim · expand_k))"), $"\"expand_k\" of {what}");
            var expandV = ReadFloat(reader.Required("expand_v", " (the value width as a fraction of dim: H·d_v = int(dim · expand_v))"), $"\"expand_v\" of {what}");
            var gateRankNode = reader.Optional("gate_rank");
            var gateRank = gateRankNode is null ? IntValue.Of(16) : ReadSize(gateRankNode, $"\"gate_rank\" of {what}");
            var shortConv = ReadOptionalFlag(reader, "short_conv", what);
            var convSizeNode = shortConv is { IsAlwaysFalse: true }
                ? reader.Optional("conv_size")
                : reader.Required("conv_size", " (the width of the q/k/v short convolutions; needed unless \"short_conv\" is false)");
            var convSize = convSizeNode is null ? null : ReadSize(convSizeNode, $"\"conv_size\" of {what}");
            var outputGate = ReadOptionalFlag(reader, "output_gate", what, defaultValue: true);
            var clampNode = reader.Optional("clamp_min");
            var clampMin = clampNode is null ? null : ReadOptionalSignedFloat(clampNode, $"\"clamp_min\" of {what}");
            var normEps = ReadFloat(reader.Required("norm_eps", " (ε of the per-head output RMSNorm)"), $"\"norm_eps\" of {what}");
            var normAffine = ReadOptionalFlag(reader, "norm_affine", what, defaultValue: true);
            var weights = ReadWeightNames(reader.Required("weights"), what, new[]
            {
                WeightRole.Required("query"), WeightRole.Required("key"), WeightRole.Required("value"),
                WeightRole.Required("gate_down"), WeightRole.Required("gate_up"), WeightRole.Required("output"),
                WeightRole.RequiredUnlessOff("output_gate", outputGate),
                WeightRole.RequiredUnlessOff("norm", normAffine, alternatives: true),
                WeightRole.RequiredUnlessOff("query_conv", shortConv), WeightRole.RequiredUnlessOff("key_conv", shortConv),
                WeightRole.RequiredUnlessOff("value_conv", shortConv),
            });

            if (heads is not null && kvHeads is not null && kvHeadsNode is not null)
                CheckHeadsDivide(heads, kvHeads, kvHeadsNode, what);
            if (heads is not null && expandK is not null && expandV is not null)
                CheckExpandedWidthsDivide(heads, headsNode!, expandK, expandV, what);

            if (heads is null || kvHeads is null || expandK is null || expandV is null || gateRank is null || shortConv is null || (convSizeNode is not null && convSize is null)
                || outputGate is null || (clampNode is not null && clampMin is null) || normEps is null || normAffine is null || weights is null)
                return null;
            return new GlaSpec(name, Naming.ToPascalCase(name), heads, kvHeads, expandK, expandV, gateRank, shortConv, convSize, outputGate, clampMin, normEps, normAffine,
                weights["query"][0], weights["key"][0], weights["value"][0], weights["gate_down"][0], weights["gate_up"][0], weights["output"][0],
                Single(weights, "output_gate"),
                (weights.TryGetValue("norm", out var norm) ? norm : System.Array.Empty<string>()).ToEquatableArray(),
                Single(weights, "query_conv"), Single(weights, "key_conv"), Single(weights, "value_conv"));
        }

        private NodeSpec? ReadLinearAttention(ObjectReader reader, string name)
        {
            string what = reader.What;
            var headsNode = reader.Required("heads", " (the number of query heads)");
            var heads = ReadSize(headsNode, $"\"heads\" of {what}");
            var kvHeadsNode = reader.Optional("kv_heads");
            var kvHeads = kvHeadsNode is null ? heads : ReadSize(kvHeadsNode, $"\"kv_heads\" of {what}");
            var expandK = ReadFloat(reader.Required("expand_k", " (the query/key width as a fraction of dim: H·d_k = int(dim · expand_k))"), $"\"expand_k\" of {what}");
            var expandV = ReadFloat(reader.Required("expand_v", " (the value width as a fraction of dim: H·d_v = int(dim · expand_v))"), $"\"expand_v\" of {what}");
            var outputNorm = ReadOptionalFlag(reader, "output_norm", what, defaultValue: true);
            var normEpsNode = outputNorm is { IsAlwaysFalse: true }
                ? reader.Optional("norm_eps")
                : reader.Required("norm_eps", " (ε of the per-head output RMSNorm; needed unless \"output_norm\" is false)");
            var normEps = normEpsNode is null ? new FloatValue(1e-5, null) : ReadFloat(normEpsNode, $"\"norm_eps\" of {what}");
            var normAffine = ReadOptionalFlag(reader, "norm_affine", what, defaultValue: true);
            var outputGate = ReadOptionalFlag(reader, "output_gate", what);
            bool normWeightUsed = outputNorm is null || normAffine is null || (!outputNorm.IsAlwaysFalse && !normAffine.IsAlwaysFalse);
            var weights = ReadWeightNames(reader.Required("weights"), what, new[]
            {
                WeightRole.Required("query"), WeightRole.Required("key"), WeightRole.Required("value"), WeightRole.Required("output"),
                WeightRole.RequiredUnlessOff("output_gate", outputGate),
                normWeightUsed ? WeightRole.Required("norm") : WeightRole.Optional("norm"),
            });

            if (heads is not null && kvHeads is not null && kvHeadsNode is not null)
                CheckHeadsDivide(heads, kvHeads, kvHeadsNode, what);
            if (heads is not null && expandK is not null && expandV is not null)
                CheckExpandedWidthsDivide(heads, headsNode!, expandK, expandV, what);

            if (heads is null || kvHeads is null || expandK is null || expandV is null || outputNorm is null || normEps is null || normAffine is null
                || outputGate is null || weights is null)
                return null;
            return new LinearAttentionSpec(name, Naming.ToPascalCase(name), heads, kvHeads, expandK, expandV, outputNorm, normEps, normAffine, outputGate,
                weights["query"][0], weights["key"][0], weights["value"][0], weights["output"][0], Single(weights, "output_gate"), Single(weights, "norm"));
        }

        /// <summary>
        /// fla's widths: H·d_k = int(dim · expand_k) and H·d_v = int(dim · expand_v) must split evenly over the heads.
        /// Checked when dim, the expansions and heads are all known at compile time.
        /// </summary>
        private void CheckExpandedWidthsDivide(IntValue heads, JsonNode headsNode, FloatValue expandK, FloatValue expandV, string what)
        {
            if (_modelWidth is null || Known(_modelWidth) is not long dim || Known(heads) is not long h)
                return;
            foreach (var (expand, property) in new[] { (expandK, "expand_k"), (expandV, "expand_v") })
            {
                if (Known(expand) is not double factor)
                    continue;
                // Python's int(): truncation toward zero, as fla computes key_dim and value_dim.
                long width = (long)(dim * factor);
                string widthText = $"int({Describe(_modelWidth, dim)} × {property} {factor.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}) = {width}";
                if (width <= 0)
                {
                    Report(DiagnosticDescriptors.InvalidValue, headsNode, $"{what}: {widthText}, so its heads would have no width");
                    return;
                }
                if (width % h != 0)
                {
                    Report(DiagnosticDescriptors.SizeDoesNotDivide, headsNode,
                        $"{what} has {Describe(heads, h)} heads, which do not divide evenly into {widthText} channels");
                    return;
                }
            }
        }

        // ---- Attention variants -------------------------------------------------------------------------------

        private NodeSpec? ReadSlidingWindowAttention(ObjectReader reader, string name)
        {
            string what = reader.What;
            var attention = ReadAttentionProjections(reader, name, withRope: true, out _);
            var window = ReadSize(reader.Required("window", " (w: a query sees the keys of the last w positions, itself included)"), $"\"window\" of {what}");
            var globalsNode = reader.Optional("global_positions");
            var globals = globalsNode is null ? new List<int>() : ReadGlobalPositions(globalsNode, what);
            if (attention is null || window is null || globals is null)
                return null;
            return new SlidingWindowAttentionSpec(name, Naming.ToPascalCase(name), attention, window, globals.ToEquatableArray());
        }

        /// <summary>A list of absolute positions whose keys every later query sees: integers ≥ 0, ascending, distinct.</summary>
        private List<int>? ReadGlobalPositions(JsonNode node, string owner)
        {
            string what = $"\"global_positions\" of {owner}";
            if (node is not JsonArray array)
            {
                Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be an array of token positions such as [0], found {node.Describe()}");
                return null;
            }
            var positions = new List<int>();
            bool valid = true;
            foreach (var item in array.Items)
            {
                if (item is not JsonNumber { Integer: long value } || value < 0 || value > int.MaxValue)
                {
                    Report(DiagnosticDescriptors.InvalidValue, item, $"{what}: each entry must be a whole number ≥ 0 (a token position), found {Found(item)}");
                    valid = false;
                    continue;
                }
                if (positions.Count > 0 && value <= positions[positions.Count - 1])
                {
                    Report(DiagnosticDescriptors.InvalidValue, item,
                        $"{what} must be in ascending order without repeats; {value} comes after {positions[positions.Count - 1]}");
                    valid = false;
                    continue;
                }
                positions.Add((int)value);
            }
            return valid ? positions : null;
        }

        private NodeSpec? ReadCcaAttention(ObjectReader reader, string name)
        {
            string what = reader.What;
            var attention = ReadAttentionProjections(reader, name, withRope: true, out _);
            var groupSize = ReadSize(reader.Required("group_size", " (g: tokens pooled into one core token)"), $"\"group_size\" of {what}");
            var window = ReadSize(reader.Required("window", " (w: the local window of raw keys)"), $"\"window\" of {what}");
            if (attention is null || groupSize is null || window is null)
                return null;
            return new CcaAttentionSpec(name, Naming.ToPascalCase(name), attention, groupSize, window);
        }

        private NodeSpec? ReadAgentAttention(ObjectReader reader, string name)
        {
            string what = reader.What;
            // Agent attention takes positions from its convolution and agents: it has no "rope" property.
            var attention = ReadAttentionProjections(reader, name, withRope: false, out var weights, "conv");
            var agents = ReadSize(reader.Required("agents", " (n: agent tokens per chunk and head)"), $"\"agents\" of {what}");
            var chunkSize = ReadSize(reader.Required("chunk_size", " (C: tokens per chunk of the causal form)"), $"\"chunk_size\" of {what}");
            var convKernel = ReadSize(reader.Required("conv_kernel", " (taps of the causal depthwise convolution of the values)"), $"\"conv_kernel\" of {what}");
            var convBias = ReadOptionalFlag(reader, "conv_bias", what);
            if (attention is null || weights is null || agents is null || chunkSize is null || convKernel is null || convBias is null)
                return null;
            return new AgentAttentionSpec(name, Naming.ToPascalCase(name), attention, agents, chunkSize, convKernel, convBias, weights["conv"][0]);
        }

        // ---- hyena ----------------------------------------------------------------------------------------------

        private NodeSpec? ReadHyena(ObjectReader reader, string name)
        {
            string what = reader.What;
            var maxLength = ReadSize(reader.Required("max_length", " (max_seq_len: the length of the stored filter, the longest context)"), $"\"max_length\" of {what}");
            var embeddingDimNode = reader.Required("embedding_dim", " (emb_dim: the width of the positional embedding z, odd and ≥ 3)");
            var embeddingDim = ReadSize(embeddingDimNode, $"\"embedding_dim\" of {what}");
            var filterOrder = ReadSize(reader.Required("filter_order", " (the width of the implicit filter network)"), $"\"filter_order\" of {what}");
            var innerMlps = ReadSize(reader.Required("inner_mlps", " (num_inner_mlps: hidden layers of the filter network)"), $"\"inner_mlps\" of {what}");
            var shortFilterNode = reader.Optional("short_filter_width");
            var shortFilter = shortFilterNode is null ? IntValue.Of(3) : ReadSize(shortFilterNode, $"\"short_filter_width\" of {what}");
            var orderNode = reader.Optional("order");
            var order = orderNode is null ? IntValue.Of(2) : ReadSize(orderNode, $"\"order\" of {what}");
            var frequency = ReadFloat(reader.Required("activation_frequency", " (the Sin frequency used when the checkpoint stores no freq)"), $"\"activation_frequency\" of {what}");
            string? module = ReadTensorName(reader.Required("module", " (the module under the prefix that holds the operator's tensors, e.g. \"mixer\")"), $"\"module\" of {what}");

            if (embeddingDim is not null && Known(embeddingDim) is long e && (e < 3 || e % 2 == 0))
            {
                Report(DiagnosticDescriptors.InvalidValue, embeddingDimNode!,
                    $"\"embedding_dim\" of {what} is {Describe(embeddingDim, e)}, but it must be odd and at least 3 (time, then cosine and sine bands)");
                embeddingDim = null;
            }
            if (shortFilter is not null && shortFilterNode is not null && Known(shortFilter) is long k && k != 3)
            {
                Report(DiagnosticDescriptors.InvalidValue, shortFilterNode,
                    $"\"short_filter_width\" of {what} is {Describe(shortFilter, k)}, but only 3 is supported (HyenaDNA pads the short filter by 2 whatever its width, which is causal only for 3)");
                shortFilter = null;
            }
            if (order is not null && orderNode is not null && Known(order) is long n && n != 2)
            {
                Report(DiagnosticDescriptors.InvalidValue, orderNode,
                    $"\"order\" of {what} is {Describe(order, n)}, but only 2 is supported (HyenaDNA's filter has one long filter per channel)");
                order = null;
            }
            if (maxLength is null || embeddingDim is null || filterOrder is null || innerMlps is null || shortFilter is null || order is null || frequency is null || module is null)
                return null;
            return new HyenaSpec(name, Naming.ToPascalCase(name), maxLength, embeddingDim, filterOrder, innerMlps, shortFilter, order, frequency, module);
        }

        // ---- MLPs: gelu_mlp, moe --------------------------------------------------------------------------------

        private NodeSpec? ReadGeluMlp(ObjectReader reader, string name)
        {
            string what = reader.What;
            var intermediate = ReadSize(reader.Required("intermediate", " (the width of fc1)"), $"\"intermediate\" of {what}");
            var approximationNode = reader.Required("approximation", " (\"tanh\" or \"none\", as torch's F.gelu names them, or a gelu symbol)");
            var approximation = ReadGelu(approximationNode, $"\"approximation\" of {what}");
            var bias = ReadOptionalFlag(reader, "bias", what);
            var weights = ReadWeightNames(reader.Required("weights"), what, new[] { WeightRole.Required("fc1"), WeightRole.Required("fc2") });
            if (intermediate is null || approximation is null || bias is null || weights is null)
                return null;
            return new GeluMlpSpec(name, Naming.ToPascalCase(name), intermediate, approximation, bias, weights["fc1"][0], weights["fc2"][0]);
        }

        /// <summary>
        /// A GELU variant: "none" (exact, erf) or "tanh", as torch's F.gelu names them, or the name of a gelu symbol
        /// (bound at load from an activation name such as config.json's hidden_act).
        /// </summary>
        private GeluValue? ReadGelu(JsonNode? node, string what)
        {
            string? text = ReadString(node, what);
            switch (text)
            {
                case null:
                    return null;
                case "none":
                    return new GeluValue(GeluApproximation.None, null);
                case "tanh":
                    return new GeluValue(GeluApproximation.Tanh, null);
            }
            if (Naming.IsSpecName(text) && _symbols.ContainsKey(text))
                return ResolveSymbol(text, SymbolType.Gelu, what, At(node!)) ? new GeluValue(GeluApproximation.None, text) : null;
            Report(DiagnosticDescriptors.InvalidValue, node!,
                $"{what} must be \"none\" (exact GELU, erf) or \"tanh\", or the name of a gelu symbol, found \"{text}\"");
            return null;
        }

        // ---- gpt_neox_attention ---------------------------------------------------------------------------------

        private NodeSpec? ReadGptNeoXAttention(ObjectReader reader, string name)
        {
            string what = reader.What;
            var headsNode = reader.Required("heads", " (the number of heads; head_dim = width / heads)");
            var heads = ReadSize(headsNode, $"\"heads\" of {what}");
            var rotaryNode = reader.Required("rotary_pct", " (the fraction of each head RoPE rotates: rotary_dim = int(head_dim · rotary_pct))");
            var rotaryPct = ReadFloat(rotaryNode, $"\"rotary_pct\" of {what}");
            var thetaNode = reader.Required("rope_theta", " (the RoPE base, GPT-NeoX's rotary_emb_base)");
            var ropeTheta = ReadFloat(thetaNode, $"\"rope_theta\" of {what}");
            var qkvBias = ReadOptionalFlag(reader, "qkv_bias", what);
            var outputBias = ReadOptionalFlag(reader, "output_bias", what);
            var weights = ReadWeightNames(reader.Required("weights"), what, new[] { WeightRole.Required("query_key_value"), WeightRole.Required("output") });

            bool valid = true;
            if (ropeTheta is { Symbol: null, Literal: <= 0 })
            {
                Report(DiagnosticDescriptors.InvalidValue, thetaNode!, $"\"rope_theta\" of {what} must be positive, found {ropeTheta.Literal.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}");
                valid = false;
            }
            if (heads is not null && rotaryPct is not null)
                valid &= CheckGptNeoXSizes(heads, headsNode!, rotaryPct, rotaryNode!, what);
            if (!valid || heads is null || rotaryPct is null || ropeTheta is null || qkvBias is null || outputBias is null || weights is null)
                return null;
            return new GptNeoXAttentionSpec(name, Naming.ToPascalCase(name), heads, rotaryPct, ropeTheta, qkvBias, outputBias,
                weights["query_key_value"][0], weights["output"][0]);
        }

        /// <summary>
        /// What the generator can check of a gpt_neox_attention: heads divide the width (HZ0004), and rotary_pct is in
        /// (0, 1] and gives an even rotary width of at least 2 (HZ0007), as far as the values are known.
        /// </summary>
        private bool CheckGptNeoXSizes(IntValue heads, JsonNode headsNode, FloatValue rotaryPct, JsonNode rotaryNode, string what)
        {
            double? pct = Known(rotaryPct);
            if (pct is double p && !(p > 0 && p <= 1))
            {
                Report(DiagnosticDescriptors.InvalidValue, rotaryNode, $"\"rotary_pct\" of {what} must be in (0, 1], found {p.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}");
                return false;
            }
            if (_modelWidth is null || Known(_modelWidth) is not long width || Known(heads) is not long h)
                return true;
            if (width % h != 0)
            {
                Report(DiagnosticDescriptors.SizeDoesNotDivide, headsNode,
                    $"{what} has {Describe(heads, h)} heads, which do not divide its width {Describe(_modelWidth, width)} (head_dim = width / heads)");
                return false;
            }
            if (pct is double fraction)
            {
                long headDim = width / h;
                // As the runtime's GptNeoXAttention.RotaryDim: Python's int() of the product, for a float32 fraction.
                long rotary = (long)System.Math.Floor(headDim * (double)(float)fraction * (1 + 1e-6));
                if (rotary < 2 || rotary % 2 != 0)
                {
                    Report(DiagnosticDescriptors.InvalidValue, rotaryNode,
                        $"\"rotary_pct\" of {what} gives int(head_dim {headDim} × {fraction.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}) = {rotary} rotary dims, which must be even and at least 2");
                    return false;
                }
            }
            return true;
        }

        private NodeSpec? ReadMoe(ObjectReader reader, string name)
        {
            string what = reader.What;
            var expertsNode = reader.Required("experts", " (the number of routed experts)");
            var experts = ReadSize(expertsNode, $"\"experts\" of {what}");
            var topKNode = reader.Required("top_k", " (experts per token)");
            var topK = ReadSize(topKNode, $"\"top_k\" of {what}");
            var intermediate = ReadSize(reader.Required("intermediate", " (the width of one routed expert)"), $"\"intermediate\" of {what}");
            var normalize = ReadFlag(reader.Required("normalize_top_k", " (whether the k selected probabilities are renormalised to sum to 1)"), $"\"normalize_top_k\" of {what}");
            var sharedNode = reader.Optional("shared_intermediate");
            var shared = sharedNode is null ? null : ReadSize(sharedNode, $"\"shared_intermediate\" of {what}");
            var layouts = ReadMoeLayouts(reader.Required("weights", " (where the router and experts are: an object, or a list of layouts tried in order)"), what, sharedNode is not null);
            var fallbackNode = reader.Optional("dense_fallback");
            var fallback = fallbackNode is null ? null : ReadDenseFallback(fallbackNode, what);

            if (experts is not null && topK is not null && Known(experts) is long e && Known(topK) is long k && k > e)
                Report(DiagnosticDescriptors.InvalidValue, topKNode!, $"{what} routes each token to {Describe(topK, k)} experts, more than its {Describe(experts, e)} experts");

            if (experts is null || topK is null || intermediate is null || normalize is null || (sharedNode is not null && shared is null) || layouts is null
                || (fallbackNode is not null && fallback is null))
                return null;
            return new MoeSpec(name, Naming.ToPascalCase(name), experts, topK, intermediate, normalize, shared, layouts.ToEquatableArray(), fallback);
        }

        private List<MoeLayoutSpec>? ReadMoeLayouts(JsonNode? node, string owner, bool shared)
        {
            if (node is null)
                return null;
            IReadOnlyList<JsonNode> items = node is JsonArray array ? array.Items : new[] { node };
            if (node is JsonArray && items.Count == 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, node, $"\"weights\" of {owner} must list at least one layout");
                return null;
            }
            var layouts = new List<MoeLayoutSpec>();
            bool valid = true;
            for (int i = 0; i < items.Count; i++)
            {
                string what = node is JsonArray ? $"layout {i + 1} of \"weights\" of {owner}" : $"\"weights\" of {owner}";
                var reader = ObjectOf(items[i], what, "{\"module\", \"router\", \"experts\", \"gate\", \"up\", \"down\", ...}");
                if (reader is null)
                {
                    valid = false;
                    continue;
                }
                string? Name(string property, string hint, bool required = true)
                {
                    var value = required ? reader.Required(property, hint) : reader.Optional(property);
                    return value is null ? null : ReadTensorName(value, $"\"{property}\" of {what}");
                }
                string? module = Name("module", " (the MoE block's module under the prefix, e.g. \"mlp\")");
                string? router = Name("router", " (the router's module in the block: NAME.weight is [experts, dim])");
                string? expertsModule = Name("experts", " (the experts' module in the block)");
                string? gate = Name("gate", " (an expert's gate projection, e.g. \"w1\" or \"gate_proj\")");
                string? up = Name("up", " (an expert's up projection)");
                string? down = Name("down", " (an expert's down projection)");
                string? sharedExpert = Name("shared_expert", " (the shared expert's module in the block; needed with \"shared_intermediate\")", required: shared);
                string? sharedGate = Name("shared_expert_gate", "", required: false);
                bool sharedGateGiven = reader.Property("shared_expert_gate") is not null;
                reader.ReportUnknown();
                if (module is null || router is null || expertsModule is null || gate is null || up is null || down is null
                    || (shared && sharedExpert is null) || (sharedGateGiven && sharedGate is null))
                {
                    valid = false;
                    continue;
                }
                layouts.Add(new MoeLayoutSpec(module, router, expertsModule, gate, up, down, shared ? sharedExpert : null, shared ? sharedGate : null));
            }
            return valid ? layouts : null;
        }

        private DenseFallbackSpec? ReadDenseFallback(JsonNode node, string owner)
        {
            var reader = ObjectOf(node, $"\"dense_fallback\" of {owner}", "{\"layers\", \"intermediate\", \"weights\"}");
            if (reader is null)
                return null;
            string what = reader.What;
            var layersNode = reader.Required("layers", " (\"config\": config.json's decoder_sparse_step and mlp_only_layers say which layers are dense)");
            string? layers = ReadString(layersNode, $"\"layers\" of {what}");
            if (layers is not null && layers != "config")
            {
                Report(DiagnosticDescriptors.InvalidValue, layersNode!,
                    $"\"layers\" of {what} must be \"config\" (the layers config.json's decoder_sparse_step and mlp_only_layers make dense), found \"{layers}\"");
                layers = null;
            }
            var intermediate = ReadSize(reader.Required("intermediate", " (the width of the dense MLP)"), $"\"intermediate\" of {what}");
            var weights = ReadWeightNames(reader.Required("weights"), what, new[] { WeightRole.Required("gate"), WeightRole.Required("up"), WeightRole.Required("down") });
            reader.ReportUnknown();
            if (layers is null || intermediate is null || weights is null)
                return null;
            return new DenseFallbackSpec(intermediate, weights["gate"][0], weights["up"][0], weights["down"][0]);
        }
    }
}
