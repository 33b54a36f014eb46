using System;
using System.Collections.Generic;
using System.Linq;
using Horizon.Generators.Model;

namespace Horizon.Generators.Emitter
{
    // The emitters of the node kinds beyond rms_norm, attention and swiglu_mlp (NodeEmitters.cs). Each binds its
    // weights with the op's weights record, builds the op's options once per block group in Load, and calls the op's
    // Forward; stateful kinds create the op's state type.

    /// <summary>Code pieces several emitters share.</summary>
    internal static class EmitHelpers
    {
        /// <summary><paramref name="expression"/> when the flag holds, else null: <c>flag ? expression : null</c>, folded for literals.</summary>
        public static string When(NodeContext context, FlagValue flag, string expression) =>
            flag.IsAlwaysTrue ? expression : flag.IsAlwaysFalse ? "null" : $"{context.LoadFlag(flag)} ? {expression} : null";

        /// <summary>Adds <c>Parameter: expression</c> unless the flag is the literal false (the record's default is null).</summary>
        public static void AddWhen(List<string> arguments, NodeContext context, FlagValue flag, string parameter, string expression)
        {
            if (!flag.IsAlwaysFalse)
                arguments.Add($"{parameter}: {When(context, flag, expression)}");
        }

        /// <summary>A float as a C# double in <c>Load</c> (literals keep their double value).</summary>
        public static string LoadDouble(NodeContext context, FloatValue value) =>
            value.Symbol is null ? Naming.DoubleLiteral(value.Literal) : context.LoadFloat(value);

        /// <summary>
        /// Writes <c>int {keyDim} = int(dim · expand_k)</c> and the same for values (fla's key_dim and value_dim),
        /// each a load error unless positive.
        /// </summary>
        public static void EmitExpandedWidths(CodeWriter writer, NodeContext context, FloatValue expandK, FloatValue expandV, out string keyDim, out string valueDim)
        {
            keyDim = context.Local("KeyDim");
            valueDim = context.Local("ValueDim");
            string width = Naming.StringLiteral(context.WidthName);
            writer.Line($"int {keyDim} = global::Horizon.GeneratedModelSupport.ExpandedWidth(config, {context.Width}, {width}, {context.LoadFloat(expandK)}, {Naming.StringLiteral(context.NameOf(expandK, "expand_k"))});");
            writer.Line($"int {valueDim} = global::Horizon.GeneratedModelSupport.ExpandedWidth(config, {context.Width}, {width}, {context.LoadFloat(expandV)}, {Naming.StringLiteral(context.NameOf(expandV, "expand_v"))});");
        }

        /// <summary>The head width: int(dim · expand) / heads, exactly.</summary>
        public static string HeadWidth(NodeContext context, string expandedWidth, FloatValue expand, string expandProperty, IntValue heads) =>
            $"config.DivideExactly({expandedWidth}, {Naming.StringLiteral($"int({context.WidthName} * {context.NameOf(expand, expandProperty)})")}, "
            + $"{context.LoadInt(heads)}, {Naming.StringLiteral(context.NameOf(heads, "heads"))})";

        /// <summary>The check that key/value heads divide query heads, unless the generator already did it.</summary>
        public static void EmitHeadsDivide(CodeWriter writer, NodeContext context, IntValue heads, IntValue kvHeads)
        {
            if (!kvHeads.Equals(heads) && (heads.Symbol is not null || kvHeads.Symbol is not null))
            {
                writer.Line($"_ = config.DivideExactly({context.LoadInt(heads)}, {Naming.StringLiteral(context.NameOf(heads, "heads"))}, "
                    + $"{context.LoadInt(kvHeads)}, {Naming.StringLiteral(context.NameOf(kvHeads, "kv_heads"))});");
            }
        }

        /// <summary>A float32 copy of a tensor of exactly the given shape, recorded as bound.</summary>
        public static string ReadTensor(string name, params string[] shape) =>
            $"global::Horizon.GeneratedModelSupport.ReadTensor(directory, boundTensors, {name}, {string.Join(", ", shape)})";

        /// <summary>A bias vector bound when the checkpoint has it (a convolution built with or without bias).</summary>
        public static string OptionalVector(string name, string length) => $"directory.Contains({name}) ? BindVector({name}, {length}) : null";
    }

    internal sealed class LayerNormEmitter : NodeEmitter
    {
        private readonly LayerNormSpec _node;

        public LayerNormEmitter(LayerNormSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.LayerNormWeights";

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            // Without a bias tensor β is zero.
            string bias = _node.Bias is null ? $"new float[{context.Width}]" : $"BindVector({tensor(_node.Bias)}, {context.Width})";
            writer.Line($"{label}new {WeightsType}(BindVector({tensor(_node.Weight)}, {context.Width}), {bias}){terminator}");
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.LayerNorm.Forward({input}, {count}, {weights}, {context.InstanceFloat(_node.Eps)}, {output});");
    }

    internal sealed class GlaEmitter : NodeEmitter
    {
        private readonly GlaSpec _node;

        public GlaEmitter(GlaSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.GlaWeights";

        public override string? StateType => "global::Horizon.Ops.GlaState";

        public override string StateSummary => $"Recurrent state of gla <c>{Naming.XmlText(_node.Name)}</c>: S per key/value head and the short-convolution tails, a fixed size.";

        public override IReadOnlyList<FieldPlan> Fields(NodeContext context) => new[]
        {
            new FieldPlan("global::Horizon.Ops.GlaOptions", context.Field("Options"), context.Local("Options")),
        };

        public override void EmitSetup(CodeWriter writer, NodeContext context)
        {
            writer.Line($"// {context.Description}: sizes and switches shared by every layer of the group.");
            EmitHelpers.EmitHeadsDivide(writer, context, _node.Heads, _node.KvHeads);
            EmitHelpers.EmitExpandedWidths(writer, context, _node.ExpandK, _node.ExpandV, out string keyDim, out string valueDim);
            writer.Line($"var {context.Local("Options")} = new global::Horizon.Ops.GlaOptions({context.Width}, {context.LoadInt(_node.Heads)}, {context.LoadInt(_node.KvHeads)},");
            writer.Indent();
            writer.Line($"{EmitHelpers.HeadWidth(context, keyDim, _node.ExpandK, "expand_k", _node.Heads)},");
            writer.Line($"{EmitHelpers.HeadWidth(context, valueDim, _node.ExpandV, "expand_v", _node.Heads)})");
            writer.Outdent();
            writer.Open();
            writer.Line($"NormEps = {context.LoadFloat(_node.NormEps)},");
            if (_node.ClampMin is FloatValue clamp)
                writer.Line($"ClampMin = {EmitHelpers.LoadDouble(context, clamp)},");
            if (!_node.ShortConv.IsAlwaysFalse)
            {
                string convSize = context.LoadInt(_node.ConvSize!);
                writer.Line($"ConvSize = {(_node.ShortConv.IsAlwaysTrue ? convSize : $"{context.LoadFlag(_node.ShortConv)} ? {convSize} : 0")},");
            }
            writer.Line($"UseOutputGate = {context.LoadFlag(_node.OutputGate)},");
            writer.Close(";");
        }

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            string o = context.Local("Options"), width = context.Width, rank = context.LoadInt(_node.GateRank);
            var arguments = new List<string>
            {
                $"Query: BindMatrix({tensor(_node.QueryWeight + ".weight")}, {o}.KeyDim, {width})",
                $"Key: BindMatrix({tensor(_node.KeyWeight + ".weight")}, {o}.KvKeyDim, {width})",
                $"Value: BindMatrix({tensor(_node.ValueWeight + ".weight")}, {o}.KvValueDim, {width})",
                $"GateDown: BindMatrix({tensor(_node.GateDownWeight + ".weight")}, {rank}, {width})",
                $"GateUp: BindMatrix({tensor(_node.GateUpWeight + ".weight")}, {o}.KvKeyDim, {rank})",
                $"GateBias: BindVector({tensor(_node.GateUpWeight + ".bias")}, {o}.KvKeyDim)",
                $"Output: BindMatrix({tensor(_node.OutputWeight + ".weight")}, {width}, {o}.ValueDim)",
            };
            if (_node.OutputGateWeight is string gate)
                EmitHelpers.AddWhen(arguments, context, _node.OutputGate, "OutputGate", $"BindMatrix({tensor(gate + ".weight")}, {o}.ValueDim, {width})");
            if (_node.NormWeights.Count > 0)
            {
                string norm = _node.NormWeights.Count == 1
                    ? tensor(_node.NormWeights[0] + ".weight")
                    : $"global::Horizon.GeneratedModelSupport.FirstPresent(directory, {string.Join(", ", _node.NormWeights.Select(n => tensor(n + ".weight")))})";
                EmitHelpers.AddWhen(arguments, context, _node.NormAffine, "NormWeight", $"BindVector({norm}, {o}.HeadVDim)");
            }
            if (_node.QueryConvWeight is not null)
            {
                EmitHelpers.AddWhen(arguments, context, _node.ShortConv, "QueryConv", ShortConv(tensor, _node.QueryConvWeight, $"{o}.KeyDim", o));
                EmitHelpers.AddWhen(arguments, context, _node.ShortConv, "KeyConv", ShortConv(tensor, _node.KeyConvWeight!, $"{o}.KvKeyDim", o));
                EmitHelpers.AddWhen(arguments, context, _node.ShortConv, "ValueConv", ShortConv(tensor, _node.ValueConvWeight!, $"{o}.KvValueDim", o));
            }
            EmitArguments(writer, label, WeightsType, arguments, terminator);
        }

        /// <summary>A depthwise convolution: weight [channels, 1, conv_size], and its bias when the checkpoint has one.</summary>
        private static string ShortConv(Func<string, string> tensor, string module, string channels, string options) =>
            $"new global::Horizon.Ops.ShortConvWeights({EmitHelpers.ReadTensor(tensor(module + ".weight"), channels, "1", options + ".ConvSize")}, "
            + $"{channels}, {options}.ConvSize, {EmitHelpers.OptionalVector(tensor(module + ".bias"), channels)})";

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.Gla.Forward({input}, {count}, {weights}, {context.Field("Options")}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity) => $"new global::Horizon.Ops.GlaState({context.Field("Options")})";

        public override string? CudaNode(NodeContext context, string weights) => $"builder.Gla({weights}, {context.Field("Options")})";
    }

    internal sealed class LinearAttentionEmitter : NodeEmitter
    {
        private readonly LinearAttentionSpec _node;

        public LinearAttentionEmitter(LinearAttentionSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.LinearAttentionWeights";

        public override string? StateType => "global::Horizon.Ops.GlaState";

        public override string StateSummary => $"Recurrent state of linear_attention <c>{Naming.XmlText(_node.Name)}</c>: S per key/value head, a fixed size.";

        public override IReadOnlyList<FieldPlan> Fields(NodeContext context) => new[]
        {
            new FieldPlan("global::Horizon.Ops.LinearAttentionOptions", context.Field("Options"), context.Local("Options")),
        };

        public override void EmitSetup(CodeWriter writer, NodeContext context)
        {
            writer.Line($"// {context.Description}: sizes and switches shared by every layer of the group.");
            EmitHelpers.EmitHeadsDivide(writer, context, _node.Heads, _node.KvHeads);
            EmitHelpers.EmitExpandedWidths(writer, context, _node.ExpandK, _node.ExpandV, out string keyDim, out string valueDim);
            string heads = context.LoadInt(_node.Heads), kvHeads = context.LoadInt(_node.KvHeads);
            writer.Line($"var {context.Local("Options")} = new global::Horizon.Ops.LinearAttentionOptions({context.Width}, {heads}, {kvHeads},");
            writer.Indent();
            writer.Line($"{EmitHelpers.HeadWidth(context, keyDim, _node.ExpandK, "expand_k", _node.Heads)},");
            writer.Line($"{EmitHelpers.HeadWidth(context, valueDim, _node.ExpandV, "expand_v", _node.Heads)})");
            writer.Outdent();
            writer.Open();
            writer.Line($"OutputNorm = {context.LoadFlag(_node.OutputNorm)},");
            writer.Line($"NormEps = {context.LoadFloat(_node.NormEps)},");
            writer.Close(";");
            // The key and value widths of the key/value heads, for binding.
            writer.Line($"int {context.Local("KvKeyDim")} = {kvHeads} * {context.Local("Options")}.HeadKDim;");
            writer.Line($"int {context.Local("KvValueDim")} = {kvHeads} * {context.Local("Options")}.HeadVDim;");
        }

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            string o = context.Local("Options"), width = context.Width;
            string keyDim = context.Local("KeyDim"), valueDim = context.Local("ValueDim");
            var arguments = new List<string>
            {
                $"Query: BindMatrix({tensor(_node.QueryWeight + ".weight")}, {keyDim}, {width})",
                $"Key: BindMatrix({tensor(_node.KeyWeight + ".weight")}, {context.Local("KvKeyDim")}, {width})",
                $"Value: BindMatrix({tensor(_node.ValueWeight + ".weight")}, {context.Local("KvValueDim")}, {width})",
                $"Output: BindMatrix({tensor(_node.OutputWeight + ".weight")}, {width}, {valueDim})",
            };
            if (_node.OutputGateWeight is string gate)
                EmitHelpers.AddWhen(arguments, context, _node.OutputGate, "OutputGate", $"BindMatrix({tensor(gate + ".weight")}, {valueDim}, {width})");
            if (_node.NormWeight is string norm && !_node.OutputNorm.IsAlwaysFalse)
            {
                // γ is read only when the output is normalised and the norm has a scale.
                var used = _node.NormAffine.IsAlwaysTrue ? _node.OutputNorm
                    : _node.OutputNorm.IsAlwaysTrue ? _node.NormAffine
                    : null;
                string bind = $"BindVector({tensor(norm + ".weight")}, {o}.HeadVDim)";
                if (used is not null)
                    EmitHelpers.AddWhen(arguments, context, used, "NormWeight", bind);
                else if (!_node.NormAffine.IsAlwaysFalse)
                    arguments.Add($"NormWeight: {context.LoadFlag(_node.OutputNorm)} && {context.LoadFlag(_node.NormAffine)} ? {bind} : null");
            }
            EmitArguments(writer, label, WeightsType, arguments, terminator);
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.LinearAttention.Forward({input}, {count}, {weights}, {context.Field("Options")}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity) => $"{context.Field("Options")}.CreateState()";
    }

    /// <summary>The attention variants: the projections of an <c>attention</c> node, the variant's own options and state.</summary>
    internal abstract class AttentionVariantEmitter : NodeEmitter
    {
        protected AttentionVariantEmitter(AttentionSpec attention) => Projections = new AttentionEmitter(attention);

        /// <summary>Sets up and binds the q/k/v/o projections, exactly as for an <c>attention</c> node.</summary>
        protected AttentionEmitter Projections { get; }

        /// <summary>The variant's options type (its field) and the expression that builds it from the attention options local.</summary>
        protected abstract string OptionsType { get; }

        /// <summary>The suffix of the options' field and local, e.g. "WindowOptions" → _layersAttnWindowOptions.</summary>
        protected abstract string OptionsName { get; }

        protected abstract string NewOptions(NodeContext context, string attentionOptions);

        public override string WeightsType => "global::Horizon.Ops.AttentionWeights";

        public override IReadOnlyList<FieldPlan> Fields(NodeContext context) => new[]
        {
            new FieldPlan(OptionsType, context.Field(OptionsName), context.Local(OptionsName)),
        };

        public override void EmitSetup(CodeWriter writer, NodeContext context)
        {
            writer.Line($"// {context.Description}: sizes, rotary table and variant options shared by every layer of the group.");
            Projections.EmitProjectionSetup(writer, context);
            writer.Line($"var {context.Local(OptionsName)} = {NewOptions(context, context.Local("Options"))};");
        }

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator) =>
            Projections.EmitBind(writer, context, tensor, label, terminator);
    }

    internal sealed class SlidingWindowAttentionEmitter : AttentionVariantEmitter
    {
        private readonly SlidingWindowAttentionSpec _node;

        public SlidingWindowAttentionEmitter(SlidingWindowAttentionSpec node)
            : base(node.Attention) => _node = node;

        protected override string OptionsType => "global::Horizon.Ops.SlidingWindowAttentionOptions";

        protected override string OptionsName => "WindowOptions";

        public override string? StateType => "global::Horizon.Ops.SlidingWindowCache";

        public override string StateSummary => $"The last window of keys and values (and those of the global positions) of sliding_window_attention <c>{Naming.XmlText(_node.Name)}</c>.";

        protected override string NewOptions(NodeContext context, string attentionOptions)
        {
            string globals = _node.GlobalPositions.Count == 0
                ? "global::System.Array.Empty<int>()"
                : $"new int[] {{ {string.Join(", ", _node.GlobalPositions.Select(p => Naming.IntLiteral(p)))} }}";
            return $"new {OptionsType}({attentionOptions}, {context.LoadInt(_node.Window)}, {globals})";
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.SlidingWindowAttention.Forward({input}, {count}, {weights}, {context.Field(OptionsName)}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity) => $"new global::Horizon.Ops.SlidingWindowCache({context.Field(OptionsName)})";
    }

    internal sealed class CcaAttentionEmitter : AttentionVariantEmitter
    {
        private readonly CcaAttentionSpec _node;

        public CcaAttentionEmitter(CcaAttentionSpec node)
            : base(node.Attention) => _node = node;

        protected override string OptionsType => "global::Horizon.Ops.CcaAttentionOptions";

        protected override string OptionsName => "CcaOptions";

        public override string? StateType => "global::Horizon.Ops.CcaCache";

        public override string StateSummary => $"Core tokens and the recent raw keys and values of cca_attention <c>{Naming.XmlText(_node.Name)}</c>.";

        protected override string NewOptions(NodeContext context, string attentionOptions) =>
            $"new {OptionsType}({attentionOptions}, {context.LoadInt(_node.GroupSize)}, {context.LoadInt(_node.Window)})";

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.CcaAttention.Forward({input}, {count}, {weights}, {context.Field(OptionsName)}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity) => $"new global::Horizon.Ops.CcaCache({capacity}, {context.Field(OptionsName)})";
    }

    internal sealed class AgentAttentionEmitter : AttentionVariantEmitter
    {
        private readonly AgentAttentionSpec _node;

        public AgentAttentionEmitter(AgentAttentionSpec node)
            : base(node.Attention) => _node = node;

        protected override string OptionsType => "global::Horizon.Ops.AgentAttentionOptions";

        protected override string OptionsName => "AgentOptions";

        public override string WeightsType => "global::Horizon.Ops.AgentAttentionWeights";

        public override string? StateType => "global::Horizon.Ops.AgentAttentionState";

        public override string StateSummary => $"Agents of the completed chunks and the chunk in progress of agent_attention <c>{Naming.XmlText(_node.Name)}</c> (causal).";

        // A decoder runs the causal variant: agents per completed chunk, exact attention inside the chunk.
        protected override string NewOptions(NodeContext context, string attentionOptions) =>
            $"new {OptionsType}({attentionOptions}, {context.LoadInt(_node.Agents)}, {context.LoadInt(_node.ConvKernel)}, Causal: true, ChunkSize: {context.LoadInt(_node.ChunkSize)})";

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            // The depthwise convolution has one filter per query channel (heads·head_dim), stored [channels, 1, kernel].
            string channels = context.Local("QueryWidth");
            writer.Line($"{label}new {WeightsType}(");
            writer.Indent();
            Projections.EmitBind(writer, context, tensor, "Projections: ", ",");
            string kernel = context.LoadInt(_node.ConvKernel);
            string convWeight = EmitHelpers.ReadTensor(tensor(_node.ConvWeight + ".weight"), channels, "1", kernel);
            if (_node.ConvBias.IsAlwaysFalse)
            {
                writer.Line($"ConvWeight: {convWeight}){terminator}");
            }
            else
            {
                writer.Line($"ConvWeight: {convWeight},");
                writer.Line($"ConvBias: {EmitHelpers.When(context, _node.ConvBias, $"BindVector({tensor(_node.ConvWeight + ".bias")}, {channels})")}){terminator}");
            }
            writer.Outdent();
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.AgentAttention.Forward({input}, {count}, {weights}, {context.Field(OptionsName)}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity) => $"new global::Horizon.Ops.AgentAttentionState({capacity}, {context.Field(OptionsName)})";
    }

    internal sealed class HyenaEmitter : NodeEmitter
    {
        private readonly HyenaSpec _node;

        public HyenaEmitter(HyenaSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.HyenaWeights";

        public override string? StateType => "global::Horizon.Ops.HyenaState";

        public override string StateSummary => $"The long-convolution inputs of every token seen and the short-filter tail of hyena <c>{Naming.XmlText(_node.Name)}</c> (grows with the context).";

        public override IReadOnlyList<FieldPlan> Fields(NodeContext context) => new[]
        {
            new FieldPlan("global::Horizon.Ops.HyenaOptions", context.Field("Options"), context.Local("Options")),
        };

        public override void EmitSetup(CodeWriter writer, NodeContext context)
        {
            writer.Line($"// {context.Description}: sizes shared by every layer of the group.");
            writer.Line($"var {context.Local("Options")} = new global::Horizon.Ops.HyenaOptions({context.Width}, {context.LoadInt(_node.MaxLength)}, "
                + $"{context.LoadInt(_node.EmbeddingDim)}, {context.LoadInt(_node.FilterOrder)}, {context.LoadInt(_node.InnerMlps)}, "
                + $"{context.LoadInt(_node.ShortFilterWidth)}, {context.LoadFloat(_node.ActivationFrequency)}) {{ Order = {context.LoadInt(_node.Order)} }};");
            writer.Line($"{context.Local("Options")}.Validate(config.Path);");
        }

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator) =>
            // The filter is materialised lazily: the first Forward computes the lags its context needs.
            writer.Line($"{label}global::Horizon.Ops.HyenaWeights.Load(directory, {tensor(_node.Module + ".")}, {context.Local("Options")}, 1, boundTensors){terminator}");

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.Hyena.Forward({input}, {count}, {weights}, {context.Field("Options")}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity) => $"new global::Horizon.Ops.HyenaState({capacity}, {context.Field("Options")})";
    }

    internal sealed class GeluMlpEmitter : NodeEmitter
    {
        private readonly GeluMlpSpec _node;

        public GeluMlpEmitter(GeluMlpSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.GeluMlpWeights";

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            string intermediate = context.LoadInt(_node.Intermediate), width = context.Width;
            EmitArguments(writer, label, WeightsType, new[]
            {
                $"Fc1: BindMatrix({tensor(_node.Fc1Weight + ".weight")}, {intermediate}, {width})",
                $"Fc1Bias: {EmitHelpers.When(context, _node.Bias, $"BindVector({tensor(_node.Fc1Weight + ".bias")}, {intermediate})")}",
                $"Fc2: BindMatrix({tensor(_node.Fc2Weight + ".weight")}, {width}, {intermediate})",
                $"Fc2Bias: {EmitHelpers.When(context, _node.Bias, $"BindVector({tensor(_node.Fc2Weight + ".bias")}, {width})")}",
            }, terminator);
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.GeluMlp.Forward({input}, {count}, {weights}, {context.InstanceGelu(_node.Approximation)}, {output});");
    }

    /// <summary>
    /// <c>gpt_neox_attention</c>: <c>Horizon.Ops.GptNeoXAttention</c> with the fused per-head q|k|v projection
    /// [3·width, width] and partial rotary; options (head_dim, rotary table) built once per block group in Load.
    /// </summary>
    internal sealed class GptNeoXAttentionEmitter : NodeEmitter
    {
        private readonly GptNeoXAttentionSpec _node;

        public GptNeoXAttentionEmitter(GptNeoXAttentionSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.GptNeoXAttentionWeights";

        public override string? StateType => "global::Horizon.Ops.KvCache";

        public override string StateSummary => $"Keys and values of gpt_neox_attention <c>{Naming.XmlText(_node.Name)}</c>.";

        public override IReadOnlyList<FieldPlan> Fields(NodeContext context) => new[]
        {
            new FieldPlan("global::Horizon.Ops.GptNeoXOptions", context.Field("Options"), context.Local("Options")),
        };

        public override void EmitSetup(CodeWriter writer, NodeContext context)
        {
            writer.Line($"// {context.Description}: head_dim = width / heads and the partial rotary table, shared by every layer of the group.");
            writer.Line($"var {context.Local("Options")} = global::Horizon.Ops.GptNeoXAttention.CreateOptions(config, "
                + $"{context.Width}, {Naming.StringLiteral(context.WidthName)}, {context.LoadInt(_node.Heads)}, {Naming.StringLiteral(context.NameOf(_node.Heads, "heads"))}, "
                + $"{context.LoadFloat(_node.RotaryPct)}, {Naming.StringLiteral(context.NameOf(_node.RotaryPct, "rotary_pct"))}, "
                + $"{context.LoadFloat(_node.RopeTheta)}, {Naming.StringLiteral(context.NameOf(_node.RopeTheta, "rope_theta"))});");
            writer.Line($"int {context.Local("FusedWidth")} = {context.Product(IntValue.Of(3), "3", context.WidthValue, "dim")};");
        }

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            string fused = context.Local("FusedWidth"), width = context.Width;
            EmitArguments(writer, label, WeightsType, new[]
            {
                $"QueryKeyValue: BindMatrix({tensor(_node.QueryKeyValueWeight + ".weight")}, {fused}, {width})",
                $"QueryKeyValueBias: {EmitHelpers.When(context, _node.QkvBias, $"BindVector({tensor(_node.QueryKeyValueWeight + ".bias")}, {fused})")}",
                $"Dense: BindMatrix({tensor(_node.OutputWeight + ".weight")}, {width}, {width})",
                $"DenseBias: {EmitHelpers.When(context, _node.OutputBias, $"BindVector({tensor(_node.OutputWeight + ".bias")}, {width})")}",
            }, terminator);
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.GptNeoXAttention.Forward({input}, {count}, {weights}, {context.Field("Options")}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity)
        {
            string options = context.Field("Options");
            return $"new global::Horizon.Ops.KvCache({capacity}, {options}.Heads, {options}.HeadDim)";
        }
    }

    internal sealed class MoeEmitter : NodeEmitter
    {
        private readonly MoeSpec _node;

        public MoeEmitter(MoeSpec node) => _node = node;

        public override string WeightsType => _node.DenseFallback is null ? "global::Horizon.Ops.MoeWeights" : "global::Horizon.Ops.MoeOrDenseMlpWeights";

        public override IReadOnlyList<FieldPlan> Fields(NodeContext context) => new[]
        {
            new FieldPlan("global::Horizon.Ops.MoeOptions", context.Field("Options"), context.Local("Options")),
        };

        public override void EmitSetup(CodeWriter writer, NodeContext context)
        {
            writer.Line($"// {context.Description}: routing, expert sizes and checkpoint layouts shared by every layer of the group.");
            string experts = context.LoadInt(_node.Experts), topK = context.LoadInt(_node.TopK);
            // More experts per token than experts: the generator checks literals, Load checks the rest.
            string checkedTopK = _node.TopK.Symbol is null && _node.Experts.Symbol is null
                ? topK
                : $"global::Horizon.GeneratedModelSupport.AtMost(config, {topK}, {Naming.StringLiteral(context.NameOf(_node.TopK, "top_k"))}, {experts}, {Naming.StringLiteral(context.NameOf(_node.Experts, "experts"))})";
            writer.Line($"var {context.Local("Options")} = new global::Horizon.Ops.MoeOptions({checkedTopK}, {context.LoadFlag(_node.NormalizeTopK)});");
            string shared = _node.SharedIntermediate is IntValue width ? context.LoadInt(width) : "null";
            writer.Line($"var {context.Local("Shape")} = new global::Horizon.Ops.MoeShape({context.Width}, {experts}, {context.LoadInt(_node.Intermediate)}, {shared});");
            writer.Line($"var {context.Local("Layouts")} = new global::Horizon.Ops.MoeTensorNames[]");
            writer.Open();
            foreach (var layout in _node.Layouts)
            {
                var arguments = new List<string>
                {
                    Naming.StringLiteral(layout.Module), Naming.StringLiteral(layout.Gate), Naming.StringLiteral(layout.Up), Naming.StringLiteral(layout.Down),
                    $"Router: {Naming.StringLiteral(layout.Router)}", $"Experts: {Naming.StringLiteral(layout.Experts)}",
                };
                if (layout.SharedExpert is string sharedExpert)
                {
                    arguments.Add($"SharedExpert: {Naming.StringLiteral(sharedExpert)}");
                    if (layout.SharedExpertGate is string sharedGate)
                        arguments.Add($"SharedExpertGate: {Naming.StringLiteral(sharedGate)}");
                    // The shared expert's projections are named as the routed experts' are.
                    arguments.Add($"SharedGate: {Naming.StringLiteral(layout.Gate)}");
                    arguments.Add($"SharedUp: {Naming.StringLiteral(layout.Up)}");
                    arguments.Add($"SharedDown: {Naming.StringLiteral(layout.Down)}");
                }
                writer.Line($"new global::Horizon.Ops.MoeTensorNames({string.Join(", ", arguments)}),");
            }
            writer.Close(";");
            if (_node.DenseFallback is not null)
            {
                writer.Line("// Which layers are MoE layers and which dense: config.json's decoder_sparse_step and mlp_only_layers.");
                writer.Line($"var {context.Local("LayerRule")} = global::Horizon.Ops.MoeConfig.FromConfig(config);");
            }
        }

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            // Bind reads whichever layout the checkpoint has; the lookup records each tensor it finds.
            string bind = $"global::Horizon.Ops.MoeWeights.Bind(name => global::Horizon.GeneratedModelSupport.Lookup(directory, boundTensors, name), "
                + $"{tensor("")}, {context.Local("Layouts")}, {context.Local("Shape")}, directory.Path)";
            if (_node.DenseFallback is not DenseFallbackSpec dense)
            {
                writer.Line($"{label}{bind}{terminator}");
                return;
            }
            string intermediate = context.LoadInt(dense.Intermediate), width = context.Width;
            writer.Line($"{label}{context.Local("LayerRule")}.IsMoeLayer({context.LayerIndex})");
            writer.Indent();
            writer.Line($"? new {WeightsType}({bind})");
            writer.Line($": new {WeightsType}(new global::Horizon.Ops.SwiGluMlpWeights(");
            writer.Indent();
            writer.Line($"Gate: BindMatrix({tensor(dense.GateWeight + ".weight")}, {intermediate}, {width}),");
            writer.Line($"Up: BindMatrix({tensor(dense.UpWeight + ".weight")}, {intermediate}, {width}),");
            writer.Line($"Down: BindMatrix({tensor(dense.DownWeight + ".weight")}, {width}, {intermediate}))){terminator}");
            writer.Outdent();
            writer.Outdent();
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.Moe.Forward({input}, {count}, {weights}, {context.Field("Options")}, {output});");
    }
}
