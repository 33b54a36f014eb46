using System;
using System.Collections.Generic;
using Horizon.Generators.Model;

namespace Horizon.Generators.Emitter
{
    /// <summary>A field of the model class that a node needs at run time, set from a local of <c>Load</c>.</summary>
    internal sealed record FieldPlan(string Type, string Name, string LoadLocal);

    /// <summary>What a node emitter may ask about its surroundings: names, and how to spell sizes in each method.</summary>
    internal sealed class NodeContext
    {
        private readonly ModelEmitter _model;
        private readonly Dictionary<string, string> _locals = new Dictionary<string, string>(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _fields = new Dictionary<string, string>(StringComparer.Ordinal);

        /// <param name="width">The width of the level the node runs in: the embedding's dim (a two-level spec: its level's).</param>
        public NodeContext(ModelEmitter model, NodeSpec node, BlockGroupSpec? group, IntValue width)
        {
            _model = model;
            Node = node;
            Group = group;
            WidthValue = width;
        }

        public NodeSpec Node { get; }

        /// <summary>The block group, or null for final_norm.</summary>
        public BlockGroupSpec? Group { get; }

        /// <summary>How comments name the node, e.g. "attention 'self_attn' of block group 'layers'".</summary>
        public string Description => $"{Node.Kind} '{Node.Name}'" + (Group is null ? "" : $" of block group '{Group.Name}'");

        private string BaseName => Group is null
            ? Naming.ToCamelCase(Node.PropertyName)
            : Naming.ToCamelCase(Group.PropertyName) + Node.PropertyName;

        /// <summary>A local of <c>Load</c> for this node, e.g. Local("Options") → layersSelfAttnOptions.</summary>
        public string Local(string suffix)
        {
            if (!_locals.TryGetValue(suffix, out var name))
                _locals[suffix] = name = _model.LoadLocals.Allocate(BaseName + suffix);
            return name;
        }

        /// <summary>A private field of the model for this node, e.g. Field("Options") → _layersSelfAttnOptions.</summary>
        public string Field(string suffix)
        {
            if (!_fields.TryGetValue(suffix, out var name))
                _fields[suffix] = name = _model.Fields.Allocate("_" + BaseName + suffix);
            return name;
        }

        /// <summary>The width every node of the level reads and writes: the embedding's dim (a two-level spec: its level's).</summary>
        public IntValue WidthValue { get; }

        /// <summary>The model width (the level's embedding dim) in <c>Load</c>.</summary>
        public string Width => _model.LoadInt(WidthValue);

        public string LoadInt(IntValue value) => _model.LoadInt(value);

        public string InstanceFloat(FloatValue value) => _model.InstanceFloat(value);

        /// <summary>A GELU variant outside <c>Load</c>: the enum member of a literal, or the gelu symbol's property.</summary>
        public string InstanceGelu(GeluValue value) => _model.InstanceGelu(value);

        /// <summary>A float in <c>Load</c>: its literal, or the symbol's local.</summary>
        public string LoadFloat(FloatValue value) => _model.LoadFloat(value);

        /// <summary>
        /// The global index of the layer being bound, inside the loop over a group's layers in <c>Load</c>
        /// (<c>index</c>, or the group's first layer plus <c>index</c>).
        /// </summary>
        public string LayerIndex { get; set; } = "index";

        public string LoadFlag(FlagValue value) => _model.LoadFlag(value);

        /// <summary>How load-time errors name a size: its config key or symbol, or the node property for a literal.</summary>
        public string NameOf(IntValue value, string property) => _model.DisplayName(value, property);

        /// <summary>How load-time errors name a float: its config key or symbol, or the node property for a literal.</summary>
        public string NameOf(FloatValue value, string property) => _model.DisplayName(value, property);

        /// <summary>How load-time errors name the model width: the level's embedding dim (its config key or symbol).</summary>
        public string WidthName => _model.DisplayName(WidthValue, "dim");

        /// <summary>
        /// C# for <paramref name="left"/> × <paramref name="right"/> in <c>Load</c>: a constant when both are
        /// literals, else a checked product whose overflow is a load error naming both sizes.
        /// </summary>
        public string Product(IntValue left, string leftProperty, IntValue right, string rightProperty)
        {
            if (left.Symbol is null && right.Symbol is null && (long)left.Literal * right.Literal <= int.MaxValue)
                return Naming.IntLiteral((long)left.Literal * right.Literal);
            return "global::Horizon.GeneratedModelSupport.Multiply(config, "
                + $"{LoadInt(left)}, {Naming.StringLiteral(NameOf(left, leftProperty))}, "
                + $"{LoadInt(right)}, {Naming.StringLiteral(NameOf(right, rightProperty))})";
        }
    }

    /// <summary>
    /// The code of one node kind: its weights type, how <c>Load</c> binds one layer's weights, what it keeps per
    /// session, and the call <c>Forward</c> makes. One subclass per kind, chosen in <see cref="For"/>.
    /// </summary>
    internal abstract class NodeEmitter
    {
        /// <summary>The emitter of a node: the emitter's side of the kind table (the parser has the other side).</summary>
        public static NodeEmitter For(NodeSpec node) => node switch
        {
            RmsNormSpec norm => new RmsNormEmitter(norm),
            LayerNormSpec norm => new LayerNormEmitter(norm),
            AttentionSpec attention => new AttentionEmitter(attention),
            GptNeoXAttentionSpec neox => new GptNeoXAttentionEmitter(neox),
            GlaSpec gla => new GlaEmitter(gla),
            LinearAttentionSpec linear => new LinearAttentionEmitter(linear),
            SlidingWindowAttentionSpec window => new SlidingWindowAttentionEmitter(window),
            CcaAttentionSpec cca => new CcaAttentionEmitter(cca),
            AgentAttentionSpec agent => new AgentAttentionEmitter(agent),
            HyenaSpec hyena => new HyenaEmitter(hyena),
            SwiGluMlpSpec mlp => new SwiGluMlpEmitter(mlp),
            GeluMlpSpec mlp => new GeluMlpEmitter(mlp),
            MoeSpec moe => new MoeEmitter(moe),
            _ => throw new InvalidOperationException($"no emitter for node kind '{node.Kind}'"),
        };

        /// <summary>The type of the node's property in the layer weights record.</summary>
        public abstract string WeightsType { get; }

        /// <summary>The type kept per layer and session (null: the node is stateless).</summary>
        public virtual string? StateType => null;

        /// <summary>The doc summary of the node's state property.</summary>
        public virtual string StateSummary => "";

        /// <summary>Fields of the model the node's Forward and CreateState code read.</summary>
        public virtual IReadOnlyList<FieldPlan> Fields(NodeContext context) => Array.Empty<FieldPlan>();

        /// <summary><c>Load</c> statements run once per block group, before binding its layers (checks, derived sizes).</summary>
        public virtual void EmitSetup(CodeWriter writer, NodeContext context)
        {
        }

        /// <summary>
        /// Writes <paramref name="label"/> followed by the expression that binds the node's weights, then
        /// <paramref name="terminator"/>. <paramref name="tensor"/> turns a name of the spec into a C# string
        /// expression (under the layer prefix inside a block group).
        /// </summary>
        public abstract void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator);

        /// <summary>The <c>Forward</c> statement: reads <paramref name="input"/> (rows × width) and writes <paramref name="output"/>.</summary>
        public abstract void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count);

        /// <summary>
        /// The expression that builds the node's CUDA layer with the runtime's <c>CudaModelBuilder</c> (a local named
        /// <c>builder</c>) from <paramref name="weights"/>, or null when the kind has no CUDA kernels yet.
        /// </summary>
        public virtual string? CudaNode(NodeContext context, string weights) => null;

        /// <summary>The expression that creates the node's state for a session of <paramref name="capacity"/> tokens.</summary>
        public virtual string CreateState(NodeContext context, string capacity) =>
            throw new InvalidOperationException($"node kind '{context.Node.Kind}' keeps no state");

        protected static void EmitArguments(CodeWriter writer, string label, string constructor, IReadOnlyList<string> arguments, string terminator)
        {
            writer.Line($"{label}new {constructor}(");
            writer.Indent();
            for (int i = 0; i < arguments.Count; i++)
                writer.Line(arguments[i] + (i == arguments.Count - 1 ? ")" + terminator : ","));
            writer.Outdent();
        }
    }

    internal sealed class RmsNormEmitter : NodeEmitter
    {
        private readonly RmsNormSpec _node;

        public RmsNormEmitter(RmsNormSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.RmsNormWeights";

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator) =>
            writer.Line($"{label}new {WeightsType}(BindVector({tensor(_node.Weight)}, {context.Width})){terminator}");

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.RmsNorm.Forward({input}, {count}, {weights}, {context.InstanceFloat(_node.Eps)}, {output});");

        public override string? CudaNode(NodeContext context, string weights) => $"builder.RmsNorm({weights}, {context.InstanceFloat(_node.Eps)})";
    }

    internal sealed class AttentionEmitter : NodeEmitter
    {
        private readonly AttentionSpec _node;

        public AttentionEmitter(AttentionSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.AttentionWeights";

        public override string? StateType => "global::Horizon.Ops.KvCache";

        public override string StateSummary => $"Keys and values of attention <c>{Naming.XmlText(_node.Name)}</c>.";

        public override IReadOnlyList<FieldPlan> Fields(NodeContext context) => new[]
        {
            new FieldPlan("global::Horizon.Ops.AttentionOptions", context.Field("Options"), context.Local("Options")),
        };

        public override void EmitSetup(CodeWriter writer, NodeContext context)
        {
            writer.Line($"// {context.Description}: sizes and rotary table shared by every layer of the group.");
            EmitProjectionSetup(writer, context);
        }

        /// <summary>
        /// The checks, widths and <c>AttentionOptions</c> local (<c>context.Local("Options")</c>) of the
        /// projections; the attention variants build their own options on it.
        /// </summary>
        public void EmitProjectionSetup(CodeWriter writer, NodeContext context)
        {
            // A spec with both counts literal was already checked by the generator.
            if (!_node.KvHeads.Equals(_node.Heads) && (_node.Heads.Symbol is not null || _node.KvHeads.Symbol is not null))
            {
                writer.Line($"_ = config.DivideExactly({context.LoadInt(_node.Heads)}, {Naming.StringLiteral(context.NameOf(_node.Heads, "heads"))}, "
                    + $"{context.LoadInt(_node.KvHeads)}, {Naming.StringLiteral(context.NameOf(_node.KvHeads, "kv_heads"))});");
            }
            writer.Line($"int {context.Local("QueryWidth")} = {context.Product(_node.Heads, "heads", _node.HeadDim, "head_dim")};");
            writer.Line($"int {context.Local("KeyValueWidth")} = {context.Product(_node.KvHeads, "kv_heads", _node.HeadDim, "head_dim")};");
            string headDim = context.LoadInt(_node.HeadDim);
            string rope = _node.Rope == RopeMode.Config ? $"global::Horizon.Ops.RopeTable.FromConfig(config, {headDim})" : "null";
            writer.Line($"var {context.Local("Options")} = new global::Horizon.Ops.AttentionOptions("
                + $"{context.Width}, {context.LoadInt(_node.Heads)}, {context.LoadInt(_node.KvHeads)}, {headDim}, {rope});");
        }

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            string query = context.Local("QueryWidth"), keyValue = context.Local("KeyValueWidth"), width = context.Width;
            var arguments = new List<string>
            {
                $"Query: BindMatrix({tensor(_node.QueryWeight + ".weight")}, {query}, {width})",
                $"Key: BindMatrix({tensor(_node.KeyWeight + ".weight")}, {keyValue}, {width})",
                $"Value: BindMatrix({tensor(_node.ValueWeight + ".weight")}, {keyValue}, {width})",
                $"Output: BindMatrix({tensor(_node.OutputWeight + ".weight")}, {width}, {query})",
            };
            AddBias(arguments, context, _node.QkvBias, "QueryBias", tensor(_node.QueryWeight + ".bias"), query);
            AddBias(arguments, context, _node.QkvBias, "KeyBias", tensor(_node.KeyWeight + ".bias"), keyValue);
            AddBias(arguments, context, _node.QkvBias, "ValueBias", tensor(_node.ValueWeight + ".bias"), keyValue);
            AddBias(arguments, context, _node.OutputBias, "OutputBias", tensor(_node.OutputWeight + ".bias"), width);
            EmitArguments(writer, label, WeightsType, arguments, terminator);
        }

        /// <summary>A bias whose flag is the literal false is left out (the record's default is null).</summary>
        private static void AddBias(List<string> arguments, NodeContext context, FlagValue flag, string parameter, string name, string length)
        {
            if (flag.IsAlwaysFalse)
                return;
            string bind = $"BindVector({name}, {length})";
            arguments.Add(flag.IsAlwaysTrue ? $"{parameter}: {bind}" : $"{parameter}: {context.LoadFlag(flag)} ? {bind} : null");
        }

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.Attention.Forward({input}, {count}, {weights}, {context.Field("Options")}, {state}, {output});");

        public override string CreateState(NodeContext context, string capacity)
        {
            string options = context.Field("Options");
            return $"new global::Horizon.Ops.KvCache({capacity}, {options}.KvHeads, {options}.HeadDim)";
        }

        public override string? CudaNode(NodeContext context, string weights) => $"builder.Attention({weights}, {context.Field("Options")})";
    }

    internal sealed class SwiGluMlpEmitter : NodeEmitter
    {
        private readonly SwiGluMlpSpec _node;

        public SwiGluMlpEmitter(SwiGluMlpSpec node) => _node = node;

        public override string WeightsType => "global::Horizon.Ops.SwiGluMlpWeights";

        public override void EmitBind(CodeWriter writer, NodeContext context, Func<string, string> tensor, string label, string terminator)
        {
            string intermediate = context.LoadInt(_node.Intermediate), width = context.Width;
            if (_node.FusedGateUpWeight is string fused)
            {
                // A checkpoint without the up projection keeps gate and up in one [2·intermediate, dim] tensor
                // (gate rows first): legacy fla GLA. Which layout a checkpoint has is seen at load.
                string doubled = context.Product(_node.Intermediate, "intermediate", IntValue.Of(2), "2");
                writer.Line($"{label}!directory.Contains({tensor(_node.UpWeight + ".weight")})");
                writer.Indent();
                writer.Line($"? {WeightsType}.FromFusedGateUp(BindMatrix({tensor(fused + ".weight")}, {doubled}, {width}), BindMatrix({tensor(_node.DownWeight + ".weight")}, {width}, {intermediate}))");
                EmitArguments(writer, ": ", WeightsType, SeparateArguments(tensor, intermediate, width), terminator);
                writer.Outdent();
                return;
            }
            EmitArguments(writer, label, WeightsType, SeparateArguments(tensor, intermediate, width), terminator);
        }

        private string[] SeparateArguments(Func<string, string> tensor, string intermediate, string width) => new[]
        {
            $"Gate: BindMatrix({tensor(_node.GateWeight + ".weight")}, {intermediate}, {width})",
            $"Up: BindMatrix({tensor(_node.UpWeight + ".weight")}, {intermediate}, {width})",
            $"Down: BindMatrix({tensor(_node.DownWeight + ".weight")}, {width}, {intermediate})",
        };

        public override void EmitForward(CodeWriter writer, NodeContext context, string input, string output, string weights, string? state, string count) =>
            writer.Line($"global::Horizon.Ops.SwiGluMlp.Forward({input}, {count}, {weights}, {output});");

        public override string? CudaNode(NodeContext context, string weights) => $"builder.SwiGluMlp({weights})";
    }
}
