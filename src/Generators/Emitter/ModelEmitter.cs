using System.Collections.Generic;
using System.Linq;
using Horizon.Generators.Model;
using Horizon.Generators.Parser;

namespace Horizon.Generators.Emitter
{
    /// <summary>
    /// Writes the C# of one valid spec: the model class with its typed sizes, weights and state, Load, CreateState
    /// and Forward, and the module initializer that registers its architectures. Every type is written with
    /// global:: so the code compiles whatever usings or names the consuming project has.
    /// </summary>
    internal sealed partial class ModelEmitter
    {
        private const string Invariant = "global::System.Globalization.CultureInfo.InvariantCulture";

        private readonly CodeWriter _w = new CodeWriter();
        private readonly Dictionary<string, SymbolSpec> _symbols = new Dictionary<string, SymbolSpec>(System.StringComparer.Ordinal);
        private readonly Dictionary<string, string> _symbolLocals = new Dictionary<string, string>(System.StringComparer.Ordinal);
        private readonly List<GroupPlan> _groups = new List<GroupPlan>();
        private readonly NodePlan _finalNorm;
        private readonly List<FieldPlan> _nodeFields = new List<FieldPlan>();
        private readonly string _embeddingLocal;
        private readonly string _finalNormLocal;
        private readonly string _lmHeadLocal;

        private ModelEmitter(ModelSpec spec)
        {
            Spec = spec;
            foreach (var symbol in spec.Symbols)
                _symbols[symbol.Name] = symbol;

            // Locals of Load. The names the generated code uses itself come first, so spec names yield to them.
            LoadLocals = new NameAllocator(
                "directory", "config", "boundTensors", "BindMatrix", "BindVector", "sizes", "info", "parameterCount",
                "parametersByDType", "index", "layerNumber", "prefix", "name", "rows", "cols", "length");
            foreach (var name in spec.BindingOrder)
                _symbolLocals[name] = LoadLocals.Allocate(Naming.ToCamelCase(_symbols[name].PropertyName));
            _embeddingLocal = LoadLocals.Allocate(Naming.ToCamelCase(spec.Embedding.PropertyName));

            Fields = new NameAllocator("_directory", "_disposed");
            AddGroups(_groups, spec.Blocks, spec.Embedding.Dim);
            _finalNorm = new NodePlan(spec.FinalNorm, NodeEmitter.For(spec.FinalNorm), new NodeContext(this, spec.FinalNorm, null, spec.Embedding.Dim));
            _finalNormLocal = LoadLocals.Allocate(Naming.ToCamelCase(spec.FinalNorm.PropertyName));
            _lmHeadLocal = LoadLocals.Allocate(Naming.ToCamelCase(spec.LmHead.PropertyName));
            if (spec.Levels is TwoLevelSpec levels)
                PlanBlockLevel(levels);

            foreach (var node in AllNodes())
                _nodeFields.AddRange(node.Emitter.Fields(node.Context));
        }

        /// <summary>Plans a level's block groups; layers are numbered from 0 in each level.</summary>
        private void AddGroups(List<GroupPlan> plans, EquatableArray<BlockGroupSpec> groups, IntValue width)
        {
            foreach (var group in groups)
            {
                var nodes = group.Nodes.Select(node => new NodePlan(node, NodeEmitter.For(node), new NodeContext(this, node, group, width))).ToArray();
                string firstLayer = plans.Count == 0 ? "" : LoadLocals.Allocate(Naming.ToCamelCase(group.PropertyName) + "FirstLayer");
                plans.Add(new GroupPlan(group, nodes, LoadLocals.Allocate(Naming.ToCamelCase(group.PropertyName)), firstLayer));
            }
        }

        public ModelSpec Spec { get; }

        public NameAllocator LoadLocals { get; }

        public NameAllocator Fields { get; }

        private string ClassName => Spec.ClassName;

        public static string Emit(ModelSpec spec) => new ModelEmitter(spec).EmitFile();

        /// <summary>The hint name of the generated file.</summary>
        public static string HintName(ModelSpec spec) => spec.ClassName + ".g.cs";

        private sealed class NodePlan
        {
            public NodePlan(NodeSpec spec, NodeEmitter emitter, NodeContext context)
            {
                Spec = spec;
                Emitter = emitter;
                Context = context;
            }

            public NodeSpec Spec { get; }

            public NodeEmitter Emitter { get; }

            public NodeContext Context { get; }
        }

        private sealed class GroupPlan
        {
            public GroupPlan(BlockGroupSpec spec, NodePlan[] nodes, string loadLocal, string firstLayerLocal)
            {
                Spec = spec;
                Nodes = nodes;
                LoadLocal = loadLocal;
                FirstLayerLocal = firstLayerLocal;
            }

            public BlockGroupSpec Spec { get; }

            public NodePlan[] Nodes { get; }

            /// <summary>The group's weights array in Load.</summary>
            public string LoadLocal { get; }

            /// <summary>The global index of the group's first layer in Load; empty for the first group (index 0).</summary>
            public string FirstLayerLocal { get; }

            public string WeightsType => Spec.PropertyName + "Weights";

            public string StateType => Spec.PropertyName + "State";

            public IEnumerable<NodePlan> StatefulNodes => Nodes.Where(n => n.Emitter.StateType is not null);
        }

        private IEnumerable<NodePlan> AllNodes()
        {
            foreach (var group in _blockGroups)
            {
                foreach (var node in group.Nodes)
                    yield return node;
            }
            if (_blockFinalNorm is not null)
                yield return _blockFinalNorm;
            foreach (var group in _groups)
            {
                foreach (var node in group.Nodes)
                    yield return node;
            }
            yield return _finalNorm;
        }

        // ---- Values: the same size is a local in Load and a Sizes property elsewhere -------------------------

        public string LoadInt(IntValue value) => value.Symbol is null ? Naming.IntLiteral(value.Literal) : _symbolLocals[value.Symbol];

        public string InstanceInt(IntValue value) => value.Symbol is null ? Naming.IntLiteral(value.Literal) : "Sizes." + _symbols[value.Symbol].PropertyName;

        public string InstanceFloat(FloatValue value) => value.Symbol is null ? Naming.FloatLiteral(value.Literal) : "Sizes." + _symbols[value.Symbol].PropertyName;

        public string LoadFloat(FloatValue value) => value.Symbol is null ? Naming.FloatLiteral(value.Literal) : _symbolLocals[value.Symbol];

        public string LoadFlag(FlagValue value) => value.Symbol is null ? (value.Literal ? "true" : "false") : _symbolLocals[value.Symbol];

        public string InstanceFlag(FlagValue value) => value.Symbol is null ? (value.Literal ? "true" : "false") : "Sizes." + _symbols[value.Symbol].PropertyName;

        public string InstanceGelu(GeluValue value) => value.Symbol is null
            ? "global::Horizon.Ops.GeluApproximation." + (value.Literal == GeluApproximation.Tanh ? "Tanh" : "None")
            : "Sizes." + _symbols[value.Symbol].PropertyName;

        public string DisplayName(IntValue value, string property) => value.Symbol is null ? property : _symbols[value.Symbol].DisplayName;

        public string DisplayName(FloatValue value, string property) => value.Symbol is null ? property : _symbols[value.Symbol].DisplayName;

        // ---- File ---------------------------------------------------------------------------------------------

        private string EmitFile()
        {
            if (Spec.Levels is TwoLevelSpec levels)
                return EmitTwoLevelFile(levels);
            _w.Line("// <auto-generated/>");
            _w.Line($"// Generated by Horizon.Generators from {Naming.XmlText(Spec.FileName)}: edit the spec, not this file.");
            _w.Line("#nullable enable");
            _w.Line();
            _w.Line($"namespace {Spec.Namespace};");
            _w.Line();
            _w.Line($"/// <summary>Generated from {Naming.XmlText(Spec.FileName)} (architectures: {Naming.XmlText(string.Join(", ", Spec.Architectures))}).</summary>");
            _w.Open($"public sealed partial class {ClassName} : global::Horizon.ILastLogitsModel, global::Horizon.Cuda.ICudaCapableModel");
            EmitArchitectures();
            EmitDimensions();
            foreach (var group in _groups)
            {
                EmitGroupWeights(group);
                EmitGroupState(group);
            }
            EmitStateClass();
            EmitFieldsAndConstructor();
            EmitProperties();
            EmitLoad();
            EmitCreateState();
            EmitForward();
            EmitToCuda();
            EmitInterfaceMembers();
            EmitDispose();
            _w.Close();
            _w.Line();
            EmitRegistration();
            return _w.ToString();
        }

        private void EmitArchitectures()
        {
            string names = string.Join(", ", Spec.Architectures.Select(Naming.StringLiteral));
            _w.Line("/// <summary>The config.json <c>architectures</c> names this class loads (registered with <see cref=\"global::Horizon.ModelRegistry\"/>).</summary>");
            _w.Line($"public static global::System.Collections.Generic.IReadOnlyList<string> Architectures {{ get; }} = new string[] {{ {names} }};");
            _w.Line();
        }

        private void EmitDimensions()
        {
            _w.Line("/// <summary>The spec's symbols as bound from config.json when the model was loaded.</summary>");
            foreach (var symbol in Spec.Symbols)
                _w.Line($"/// <param name=\"{symbol.PropertyName}\">{Naming.XmlText(DescribeBinding(symbol))}</param>");
            _w.Line("public sealed record Dimensions(");
            _w.Indent();
            for (int i = 0; i < Spec.Symbols.Count; i++)
            {
                var symbol = Spec.Symbols[i];
                _w.Line($"{TypeOf(symbol.Type)} {symbol.PropertyName}" + (i == Spec.Symbols.Count - 1 ? ");" : ","));
            }
            if (Spec.Symbols.Count == 0)
                _w.Line(");");
            _w.Outdent();
            _w.Line();
        }

        private static string TypeOf(SymbolType type) => type switch
        {
            SymbolType.Int => "int",
            SymbolType.Float => "float",
            SymbolType.OptionalFloat => "float?",
            SymbolType.Gelu => "global::Horizon.Ops.GeluApproximation",
            _ => "bool",
        };

        /// <summary>"config.json num_key_value_heads, else num_heads": where a symbol's value comes from.</summary>
        private static string DescribeBinding(SymbolSpec symbol)
        {
            string? fallback = symbol.Type switch
            {
                SymbolType.Int => symbol.IntDefault is null ? null : DescribeExpression(symbol.IntDefault),
                SymbolType.Float => symbol.FloatDefaultSymbol
                    ?? (symbol.FloatDefault is double f ? f.ToString("R", System.Globalization.CultureInfo.InvariantCulture) : null),
                SymbolType.OptionalFloat => "null",
                SymbolType.Gelu => symbol.GeluDefault,
                _ => symbol.BoolDefault is bool b ? (b ? "true" : "false") : null,
            };
            string source = symbol.ConfigKey is null
                ? $"{fallback}"
                : $"config.json {symbol.ConfigKey}" + (fallback is null ? " (required)" : $", else {fallback}");
            return $"Symbol {symbol.Name} ({TypeOf(symbol.Type)}): {source}.";
        }

        private static string DescribeExpression(IntExpression expression)
        {
            static string Operand(IntValue value) => value.Symbol ?? Naming.IntLiteral(value.Literal);
            string text = Operand(expression.First);
            foreach (var operation in expression.Operations)
                text += $" {SpecParser.OperatorText(operation.Operator)} {Operand(operation.Operand)}";
            return text;
        }

        private void EmitGroupWeights(GroupPlan group)
        {
            _w.Line($"/// <summary>The weights of one layer of block group <c>{Naming.XmlText(group.Spec.Name)}</c> (tensors under <c>{Naming.XmlText(group.Spec.Prefix)}</c>).</summary>");
            foreach (var node in group.Nodes)
                _w.Line($"/// <param name=\"{node.Spec.PropertyName}\">{Naming.XmlText(node.Spec.Kind)} <c>{Naming.XmlText(node.Spec.Name)}</c>.</param>");
            _w.Line($"public sealed record {group.WeightsType}(");
            _w.Indent();
            for (int i = 0; i < group.Nodes.Length; i++)
            {
                var node = group.Nodes[i];
                _w.Line($"{node.Emitter.WeightsType} {node.Spec.PropertyName}" + (i == group.Nodes.Length - 1 ? ");" : ","));
            }
            _w.Outdent();
            _w.Line();
        }

        private void EmitGroupState(GroupPlan group)
        {
            var stateful = group.StatefulNodes.ToArray();
            var parameters = new NameAllocator();
            var parameterNames = stateful.Select(n => parameters.Allocate(Naming.ToCamelCase(n.Spec.PropertyName))).ToArray();

            _w.Line($"/// <summary>The per-session state of one layer of block group <c>{Naming.XmlText(group.Spec.Name)}</c>: a property per node that keeps state.</summary>");
            _w.Open($"public sealed class {group.StateType}");
            _w.Line($"internal {group.StateType}({string.Join(", ", stateful.Select((n, i) => $"{n.Emitter.StateType} {parameterNames[i]}"))})");
            _w.Open();
            for (int i = 0; i < stateful.Length; i++)
                _w.Line($"{stateful[i].Spec.PropertyName} = {parameterNames[i]};");
            _w.Close();
            foreach (var node in stateful)
            {
                _w.Line();
                _w.Line($"/// <summary>{node.Emitter.StateSummary}</summary>");
                _w.Line($"public {node.Emitter.StateType} {node.Spec.PropertyName} {{ get; }}");
            }
            _w.Line();
            _w.Line("/// <summary>Forgets every token.</summary>");
            _w.Open("public void Reset()");
            foreach (var node in stateful)
                _w.Line($"{node.Spec.PropertyName}.Reset();");
            _w.Close();
            _w.Line();
            _w.Line("/// <summary>Makes every cache and state of this layer a copy of <paramref name=\"source\"/>'s.</summary>");
            _w.Open($"internal void CopyFrom({group.StateType} source)");
            foreach (var node in stateful)
                _w.Line($"global::Horizon.Generation.StateCopy.Copy(source.{node.Spec.PropertyName}, {node.Spec.PropertyName});");
            _w.Close();
            _w.Close();
            _w.Line();
        }

        private void EmitStateClass()
        {
            var parameters = new NameAllocator("owner", "capacity");
            var groupParameters = _groups.Select(g => parameters.Allocate(Naming.ToCamelCase(g.Spec.PropertyName))).ToArray();

            _w.Line($"/// <summary>The per-session state of a <see cref=\"{ClassName}\"/>: the state of every layer and how many tokens it holds.</summary>");
            _w.Open("public sealed class State : global::Horizon.IModelState, global::Horizon.Generation.IForkableModelState, global::Horizon.Generation.ISteerableModelState");
            _w.Line($"internal State({ClassName} owner, int capacity, {string.Join(", ", _groups.Select((g, i) => $"{g.StateType}[] {groupParameters[i]}"))})");
            _w.Open();
            _w.Line("Owner = owner;");
            _w.Line("Capacity = capacity;");
            for (int i = 0; i < _groups.Count; i++)
                _w.Line($"{_groups[i].Spec.PropertyName} = {groupParameters[i]};");
            _w.Close();
            _w.Line();
            _w.Line("/// <summary>The model that created this state; only it can run on it.</summary>");
            _w.Line($"internal {ClassName} Owner {{ get; }}");
            foreach (var group in _groups)
            {
                _w.Line();
                _w.Line($"/// <summary>The state of each layer of block group <c>{Naming.XmlText(group.Spec.Name)}</c>.</summary>");
                _w.Line($"public {group.StateType}[] {group.Spec.PropertyName} {{ get; }}");
            }
            _w.Line();
            _w.Line("/// <inheritdoc/>");
            _w.Line("public int Length { get; private set; }");
            _w.Line();
            _w.Line("/// <inheritdoc/>");
            _w.Line("public int Capacity { get; }");
            _w.Line();
            _w.Line("/// <inheritdoc/>");
            _w.Open("public void Reset()");
            foreach (var group in _groups)
            {
                _w.Line($"foreach ({group.StateType} layer in {group.Spec.PropertyName})");
                _w.Line("    layer.Reset();");
            }
            _w.Line("Length = 0;");
            _w.Close();
            _w.Line();
            _w.Line("/// <summary>");
            _w.Line("/// Run after every layer of every Forward on this state, on the residual stream (read it, steer it); null for");
            _w.Line("/// none, which costs one null check per layer. Layers are counted over every block group in order.");
            _w.Line("/// </summary>");
            _w.Line("public global::Horizon.Generation.IResidualHook? ResidualHook { get; set; }");
            _w.Line();
            _w.Line("/// <summary>The number of residual-stream hook points: the layers of every block group.</summary>");
            _w.Line($"public int LayerCount => {string.Join(" + ", _groups.Select(g => g.Spec.PropertyName + ".Length"))};");
            _w.Line();
            _w.Line("/// <summary>");
            _w.Line("/// Makes this state a copy of <paramref name=\"source\"/>: every layer's cache and state, and the length (fork/snapshot).");
            _w.Line("/// Both must come from the same model with the same capacity. The residual hook is not copied.");
            _w.Line("/// </summary>");
            _w.Open("public void CopyFrom(State source)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(source);");
            _w.Line("if (source.Owner != Owner)");
            _w.Line("    throw new global::System.ArgumentException(\"the state was created by another model; copy only between states of one model\", nameof(source));");
            _w.Line("if (source.Capacity != Capacity)");
            _w.Line("    throw new global::System.ArgumentException(\"the states' capacities differ: \" + source.Capacity + \" and \" + Capacity, nameof(source));");
            _w.Line("if (ReferenceEquals(source, this))");
            _w.Line("    return;");
            foreach (var group in _groups)
            {
                _w.Line($"for (int index = 0; index < {group.Spec.PropertyName}.Length; index++)");
                _w.Line($"    {group.Spec.PropertyName}[index].CopyFrom(source.{group.Spec.PropertyName}[index]);");
            }
            _w.Line("Length = source.Length;");
            _w.Close();
            _w.Line();
            _w.Line("/// <summary>A new state of the same model and capacity holding a copy of this one (see <see cref=\"CopyFrom(State)\"/>).</summary>");
            _w.Open("public State Clone()");
            _w.Line("State copy = Owner.CreateState(Capacity);");
            _w.Line("copy.CopyFrom(this);");
            _w.Line("return copy;");
            _w.Close();
            _w.Line();
            _w.Line("global::Horizon.IModelState global::Horizon.Generation.IForkableModelState.Clone() => Clone();");
            _w.Line();
            _w.Open("void global::Horizon.Generation.IForkableModelState.CopyFrom(global::Horizon.IModelState source)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(source);");
            _w.Line("if (source is not State own)");
            _w.Line($"    throw new global::System.ArgumentException(\"the state is a \" + source.GetType().FullName + \", not a {Spec.Namespace}.{ClassName}.State\", nameof(source));");
            _w.Line("CopyFrom(own);");
            _w.Close();
            _w.Line();
            _w.Line("internal void Advance(int count) => Length += count;");
            _w.Close();
            _w.Line();
        }

        private void EmitFieldsAndConstructor()
        {
            _w.Line("private readonly global::Horizon.ModelDirectory _directory;");
            foreach (var field in _nodeFields)
                _w.Line($"private readonly {field.Type} {field.Name};");
            _w.Line("private bool _disposed;");
            _w.Line();

            var parameters = new List<string>
            {
                "global::Horizon.ModelDirectory directory",
                "Dimensions sizes",
                "global::Horizon.ModelInfo info",
                $"global::Horizon.Matrix {_embeddingLocal}",
            };
            parameters.AddRange(_groups.Select(g => $"{g.WeightsType}[] {g.LoadLocal}"));
            parameters.Add($"{_finalNorm.Emitter.WeightsType} {_finalNormLocal}");
            parameters.Add($"global::Horizon.Matrix {_lmHeadLocal}");
            parameters.AddRange(_nodeFields.Select(f => $"{f.Type} {f.LoadLocal}"));

            _w.Line($"private {ClassName}(");
            _w.Indent();
            for (int i = 0; i < parameters.Count; i++)
                _w.Line(parameters[i] + (i == parameters.Count - 1 ? ")" : ","));
            _w.Outdent();
            _w.Open();
            _w.Line("_directory = directory;");
            _w.Line("Sizes = sizes;");
            _w.Line("Info = info;");
            _w.Line($"{Spec.Embedding.PropertyName} = {_embeddingLocal};");
            foreach (var group in _groups)
                _w.Line($"{group.Spec.PropertyName} = {group.LoadLocal};");
            _w.Line($"{Spec.FinalNorm.PropertyName} = {_finalNormLocal};");
            _w.Line($"{Spec.LmHead.PropertyName} = {_lmHeadLocal};");
            foreach (var field in _nodeFields)
                _w.Line($"{field.Name} = {field.LoadLocal};");
            _w.Close();
            _w.Line();
        }

        private void EmitProperties()
        {
            var embedding = Spec.Embedding;
            _w.Line("/// <summary>The spec's symbols as bound from config.json at load.</summary>");
            _w.Line("public Dimensions Sizes { get; }");
            _w.Line();
            _w.Line("/// <summary>Architecture, bound sizes, parameter count and parameters per stored dtype.</summary>");
            _w.Line("public global::Horizon.ModelInfo Info { get; }");
            _w.Line();
            _w.Line("/// <summary>Number of token ids: rows of the embedding table, and the width of each row of logits.</summary>");
            _w.Line($"public int VocabSize => {InstanceInt(embedding.Vocab)};");
            _w.Line();
            _w.Line($"/// <summary>Embedding table <c>{Naming.XmlText(embedding.Weight)}</c> [vocab, dim].</summary>");
            _w.Line($"public global::Horizon.Matrix {embedding.PropertyName} {{ get; }}");
            foreach (var group in _groups)
            {
                _w.Line();
                _w.Line($"/// <summary>The weights of block group <c>{Naming.XmlText(group.Spec.Name)}</c>, one entry per layer.</summary>");
                _w.Line($"public {group.WeightsType}[] {group.Spec.PropertyName} {{ get; }}");
            }
            _w.Line();
            _w.Line($"/// <summary>Final norm <c>{Naming.XmlText(Spec.FinalNorm.Name)}</c>.</summary>");
            _w.Line($"public {_finalNorm.Emitter.WeightsType} {Spec.FinalNorm.PropertyName} {{ get; }}");
            _w.Line();
            var head = Spec.LmHead;
            string source = head.Tied.IsAlwaysTrue
                ? $"the embedding table (tied)"
                : head.Tied.IsAlwaysFalse
                    ? $"<c>{Naming.XmlText(head.Weight!)}</c>"
                    : $"<c>{Naming.XmlText(head.Weight!)}</c>, or the embedding table when {Naming.XmlText(head.Tied.Symbol!)} is true";
            _w.Line($"/// <summary>Output head [vocab, dim]: {source}.</summary>");
            _w.Line($"public global::Horizon.Matrix {head.PropertyName} {{ get; }}");
            _w.Line();
        }

        // ---- Load ---------------------------------------------------------------------------------------------

        private void EmitLoad()
        {
            EmitLoadHeader();
            var embedding = Spec.Embedding;
            _w.Line($"global::Horizon.Matrix {_embeddingLocal} = BindMatrix({Naming.StringLiteral(embedding.Weight)}, {LoadInt(embedding.Vocab)}, {LoadInt(embedding.Dim)});");
            for (int g = 0; g < _groups.Count; g++)
                EmitGroupLoad(g);
            _w.Line();
            EmitFinalNormAndHeadLoad();

            EmitInfo();
            var arguments = new List<string> { "directory", "sizes", "info", _embeddingLocal };
            arguments.AddRange(_groups.Select(g => g.LoadLocal));
            arguments.Add(_finalNormLocal);
            arguments.Add(_lmHeadLocal);
            arguments.AddRange(_nodeFields.Select(f => f.LoadLocal));
            _w.Line($"return new {ClassName}({string.Join(", ", arguments)});");
            _w.Close();
            _w.Line();
        }

        /// <summary>Both Load methods up to the binding of the first tensor: symbols, supported values, BindMatrix and BindVector.</summary>
        private void EmitLoadHeader()
        {
            _w.Line("/// <summary>Opens a Hugging Face model directory (config.json + safetensors) and loads it; the model owns the directory.</summary>");
            _w.Line("/// <exception cref=\"global::Horizon.ModelLoadException\">A missing or malformed file, config key or tensor.</exception>");
            _w.Open($"public static {ClassName} Load(string directory)");
            _w.Line("global::Horizon.ModelDirectory opened = global::Horizon.ModelDirectory.Open(directory);");
            _w.Open("try");
            _w.Line("return Load(opened);");
            _w.Close();
            _w.Open("catch");
            _w.Line("opened.Dispose();");
            _w.Line("throw;");
            _w.Close();
            _w.Close();
            _w.Line();

            _w.Line("/// <summary>");
            _w.Line("/// Binds the spec's symbols from config.json and every weight with its expected shape. The model takes");
            _w.Line("/// ownership of <paramref name=\"directory\"/> (its memory-mapped files) and disposes it; if loading fails, it stays the caller's.");
            _w.Line("/// </summary>");
            _w.Line("/// <exception cref=\"global::Horizon.ModelLoadException\">A missing or malformed config key or tensor.</exception>");
            _w.Open($"public static {ClassName} Load(global::Horizon.ModelDirectory directory)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(directory);");
            _w.Line("global::Horizon.ModelConfig config = directory.Config;");
            _w.Line();
            if (Spec.SupportedConfigValues.Count > 0)
            {
                _w.Line("// config.json values the model implements: any other value of these keys is refused.");
                foreach (var rule in Spec.SupportedConfigValues)
                {
                    string values = string.Join(", ", rule.Values.Select(Naming.StringLiteral));
                    _w.Line($"global::Horizon.GeneratedModelSupport.RequireSupportedValue(config, {Naming.StringLiteral(rule.Key)}, {values});");
                }
                _w.Line();
            }
            if (Spec.BindingOrder.Count > 0)
            {
                _w.Line("// Symbols, each after the symbols its default uses.");
                foreach (var name in Spec.BindingOrder)
                    EmitSymbolBinding(_symbols[name]);
                _w.Line();
            }

            _w.Line("// Every tensor bound is recorded, for the parameter count of Info.");
            _w.Line("var boundTensors = new global::System.Collections.Generic.List<string>();");
            _w.Open("global::Horizon.Matrix BindMatrix(string name, int rows, int cols)");
            _w.Line("boundTensors.Add(name);");
            _w.Line("return directory.Matrix(name, rows, cols);");
            _w.Close();
            _w.Open("float[] BindVector(string name, int length)");
            _w.Line("boundTensors.Add(name);");
            _w.Line("return directory.Vector(name, length);");
            _w.Close();
            _w.Line();
        }

        /// <summary>The final norm (of the last level) and the head, which may be tied to that level's embedding.</summary>
        private void EmitFinalNormAndHeadLoad()
        {
            var embedding = Spec.Embedding;
            _finalNorm.Emitter.EmitSetup(_w, _finalNorm.Context);
            _finalNorm.Emitter.EmitBind(_w, _finalNorm.Context, Naming.StringLiteral, $"{_finalNorm.Emitter.WeightsType} {_finalNormLocal} = ", ";");
            var head = Spec.LmHead;
            string bindHead = head.Weight is null ? "" : $"BindMatrix({Naming.StringLiteral(head.Weight)}, {LoadInt(embedding.Vocab)}, {LoadInt(embedding.Dim)})";
            string headValue = head.Tied.IsAlwaysTrue ? _embeddingLocal
                : head.Tied.IsAlwaysFalse ? bindHead
                : $"{LoadFlag(head.Tied)} ? {_embeddingLocal} : {bindHead}";
            if (!head.Tied.IsAlwaysFalse)
                _w.Line("// A tied head reads the embedding table; its own tensor is neither needed nor counted.");
            _w.Line($"global::Horizon.Matrix {_lmHeadLocal} = {headValue};");
            _w.Line();
        }

        private void EmitSymbolBinding(SymbolSpec symbol)
        {
            string local = _symbolLocals[symbol.Name];
            string? key = symbol.ConfigKey is null ? null : Naming.StringLiteral(symbol.ConfigKey);
            switch (symbol.Type)
            {
                case SymbolType.Int:
                    string? fallback = symbol.IntDefault is null ? null : IntExpression(symbol.IntDefault);
                    string value = key is null ? fallback! : fallback is null ? $"config.GetInt({key})" : $"config.TryGetInt({key}) ?? {fallback}";
                    // Every int symbol is a size: zero or negative in config.json is malformed.
                    _w.Line($"int {local} = config.Positive({value}, {Naming.StringLiteral(symbol.DisplayName)});");
                    break;
                case SymbolType.Float when symbol.FloatDefaultSymbol is string other:
                    // A chain of keys: this one when config.json has it, else the other symbol's value.
                    string otherLocal = _symbolLocals[other];
                    _w.Line(key is null ? $"float {local} = {otherLocal};" : $"float {local} = (float)(config.TryGetDouble({key}) ?? {otherLocal});");
                    break;
                case SymbolType.Float:
                    string floatFallback = symbol.FloatDefault is double f ? Naming.DoubleLiteral(f) : "";
                    _w.Line(key is null ? $"float {local} = {Naming.FloatLiteral(symbol.FloatDefault!.Value)};"
                        : symbol.FloatDefault is null ? $"float {local} = (float)config.GetDouble({key});"
                        : $"float {local} = (float)(config.TryGetDouble({key}) ?? {floatFallback});");
                    break;
                case SymbolType.OptionalFloat:
                    // Absent or null in config.json: no value.
                    _w.Line(key is null ? $"float? {local} = null;" : $"float? {local} = (float?)config.TryGetDouble({key});");
                    break;
                case SymbolType.Gelu:
                    // An activation name (hidden_act): gelu is exact, gelu_new / gelu_fast / gelu_pytorch_tanh the tanh form.
                    string activation = symbol.GeluDefault is string name ? Naming.StringLiteral(name) : "null";
                    _w.Line($"global::Horizon.Ops.GeluApproximation {local} = global::Horizon.GeneratedModelSupport.GeluApproximationOf(config, {key ?? "null"}, {activation});");
                    break;
                default:
                    string boolFallback = symbol.BoolDefault is bool b ? (b ? "true" : "false") : "";
                    _w.Line(key is null ? $"bool {local} = {boolFallback};"
                        : symbol.BoolDefault is null ? $"bool {local} = config.GetBool({key});"
                        : $"bool {local} = config.TryGetBool({key}) ?? {boolFallback};");
                    break;
            }
        }

        private string IntExpression(IntExpression expression)
        {
            string value = LoadInt(expression.First);
            string name = DisplayName(expression.First, value);
            foreach (var operation in expression.Operations)
            {
                string right = LoadInt(operation.Operand);
                string rightName = DisplayName(operation.Operand, right);
                string names = $"{Naming.StringLiteral(name)}, {right}, {Naming.StringLiteral(rightName)}";
                value = operation.Operator switch
                {
                    // Division must be exact (head_dim = hidden_size / num_heads): a remainder means a malformed config.
                    IntOperator.Divide => $"config.DivideExactly({value}, {names})",
                    // Operands are sizes, so positive: C#'s / on them rounds down, as Python's // does.
                    IntOperator.FloorDivide => $"{value} / {right}",
                    IntOperator.Multiply => $"global::Horizon.GeneratedModelSupport.Multiply(config, {value}, {names})",
                    _ => $"global::Horizon.GeneratedModelSupport.RoundUpToMultiple(config, {value}, {names})",
                };
                name = $"{name} {SpecParser.OperatorText(operation.Operator)} {rightName}";
            }
            return value;
        }

        private void EmitGroupLoad(int index) => EmitGroupLoad(_groups, index);

        /// <param name="level">The block groups of one level; <paramref name="index"/> is the group's place in it.</param>
        private void EmitGroupLoad(List<GroupPlan> level, int index)
        {
            var group = level[index];
            var spec = group.Spec;
            _w.Line();
            string count = LoadInt(spec.Repeat);
            _w.Line($"// Block group '{spec.Name}': {Describe(spec.Repeat)} layers" + (index == 0 ? ", numbered from 0." : ", numbered after the previous group's."));
            if (index > 0)
            {
                // The global index of this group's first layer: the previous group's first plus its count.
                var previous = level[index - 1];
                string first = index == 1
                    ? LoadInt(previous.Spec.Repeat)
                    : $"checked({previous.FirstLayerLocal} + {LoadInt(previous.Spec.Repeat)})";
                _w.Line($"int {group.FirstLayerLocal} = {first};");
            }
            foreach (var node in group.Nodes)
                node.Emitter.EmitSetup(_w, node.Context);
            _w.Line($"var {group.LoadLocal} = new {group.WeightsType}[{count}];");
            _w.Open($"for (int index = 0; index < {group.LoadLocal}.Length; index++)");
            string layer = index == 0 ? "index" : $"({group.FirstLayerLocal} + index)";
            foreach (var node in group.Nodes)
                node.Context.LayerIndex = layer;
            _w.Line($"string layerNumber = {layer}.ToString({Invariant});");
            _w.Line($"string prefix = {PrefixExpression(spec.Prefix)};");
            _w.Line($"{group.LoadLocal}[index] = new {group.WeightsType}(");
            _w.Indent();
            for (int i = 0; i < group.Nodes.Length; i++)
            {
                var node = group.Nodes[i];
                node.Emitter.EmitBind(_w, node.Context, name => name.Length == 0 ? "prefix" : "prefix + " + Naming.StringLiteral(name), $"{node.Spec.PropertyName}: ",
                    i == group.Nodes.Length - 1 ? ");" : ",");
            }
            _w.Outdent();
            _w.Close();
        }

        private static string Describe(IntValue value) => value.Symbol ?? Naming.IntLiteral(value.Literal);

        /// <summary>"model.layers.{layer}." → "model.layers." + layerNumber + ".".</summary>
        private static string PrefixExpression(string prefix)
        {
            var parts = prefix.Split(new[] { SpecParser.LayerPlaceholder }, System.StringSplitOptions.None);
            var pieces = new List<string>();
            for (int i = 0; i < parts.Length; i++)
            {
                if (i > 0)
                    pieces.Add("layerNumber");
                if (parts[i].Length > 0)
                    pieces.Add(Naming.StringLiteral(parts[i]));
            }
            return string.Join(" + ", pieces);
        }

        private void EmitInfo()
        {
            _w.Line("var sizes = new Dimensions(" + string.Join(", ", Spec.Symbols.Select(s => _symbolLocals[s.Name])) + ");");
            _w.Line("var (parameterCount, parametersByDType) = global::Horizon.GeneratedModelSupport.CountParameters(directory, boundTensors);");
            _w.Line("var info = new global::Horizon.ModelInfo(");
            _w.Indent();
            _w.Line("global::Horizon.GeneratedModelSupport.SelectArchitecture(config, Architectures),");
            _w.Line($"{Naming.StringLiteral(Spec.FileName)},");
            _w.Line("new global::System.Collections.Generic.KeyValuePair<string, string>[]");
            _w.Open();
            foreach (var symbol in Spec.Symbols)
            {
                string local = _symbolLocals[symbol.Name];
                string text = symbol.Type switch
                {
                    SymbolType.Int => $"{local}.ToString({Invariant})",
                    SymbolType.Float => $"{local}.ToString(\"R\", {Invariant})",
                    SymbolType.OptionalFloat => $"{local}?.ToString(\"R\", {Invariant}) ?? \"null\"",
                    SymbolType.Gelu => $"{local} == global::Horizon.Ops.GeluApproximation.Tanh ? \"tanh\" : \"none\"",
                    _ => $"{local} ? \"true\" : \"false\"",
                };
                _w.Line($"new({Naming.StringLiteral(symbol.Name)}, {text}),");
            }
            _w.Close(",");
            _w.Line("parameterCount,");
            _w.Line("parametersByDType);");
            _w.Outdent();
        }

        // ---- Sessions -----------------------------------------------------------------------------------------

        private void EmitCreateState()
        {
            _w.Line("/// <summary>Creates an empty state that holds up to <paramref name=\"capacity\"/> tokens (caches are allocated now).</summary>");
            _w.Open("public State CreateState(int capacity)");
            _w.Line("global::System.ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);");
            _w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
            var locals = new NameAllocator("capacity", "index");
            var groupLocals = _groups.Select(g => locals.Allocate(Naming.ToCamelCase(g.Spec.PropertyName))).ToArray();
            for (int i = 0; i < _groups.Count; i++)
            {
                var group = _groups[i];
                string states = string.Join(", ", group.StatefulNodes.Select(n => n.Emitter.CreateState(n.Context, "capacity")));
                _w.Line($"var {groupLocals[i]} = new {group.StateType}[{group.Spec.PropertyName}.Length];");
                _w.Line($"for (int index = 0; index < {groupLocals[i]}.Length; index++)");
                _w.Line($"    {groupLocals[i]}[index] = new {group.StateType}({states});");
            }
            _w.Line($"return new State(this, capacity, {string.Join(", ", groupLocals)});");
            _w.Close();
            _w.Line();
        }

        private void EmitForward()
        {
            var embedding = Spec.Embedding;
            _w.Line("/// <summary>");
            _w.Line("/// Runs <paramref name=\"tokens\"/> after what <paramref name=\"state\"/> already holds and writes their logits,");
            _w.Line("/// [tokens, vocab] row-major, to the start of <paramref name=\"logits\"/>. Token ids, room in the state and the");
            _w.Line("/// length of <paramref name=\"logits\"/> are checked before anything changes.");
            _w.Line("/// </summary>");
            _w.Line("/// <exception cref=\"global::Horizon.HorizonException\">A token id outside [0, vocab), or more tokens than the state has room for.</exception>");
            _w.Line("public void Forward(global::System.ReadOnlySpan<int> tokens, State state, global::System.Span<float> logits) => RunForward(tokens, state, logits, lastOnly: false);");
            _w.Line();
            _w.Line("/// <summary>");
            _w.Line("/// As <see cref=\"Forward(global::System.ReadOnlySpan{int}, State, global::System.Span{float})\"/>, but the output head runs on the last");
            _w.Line("/// token only and <paramref name=\"lastLogits\"/> receives its vocab logits: what generation needs after a prefill chunk.");
            _w.Line("/// </summary>");
            _w.Line("public void ForwardLast(global::System.ReadOnlySpan<int> tokens, State state, global::System.Span<float> lastLogits) => RunForward(tokens, state, lastLogits, lastOnly: true);");
            _w.Line();
            _w.Open("private void RunForward(global::System.ReadOnlySpan<int> tokens, State state, global::System.Span<float> logits, bool lastOnly)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(state);");
            _w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
            _w.Line("if (state.Owner != this)");
            _w.Line($"    throw new global::System.ArgumentException(\"the state was created by another {ClassName}; use this model's CreateState\", nameof(state));");
            _w.Line("int count = tokens.Length;");
            _w.Line($"int vocab = {InstanceInt(embedding.Vocab)};");
            _w.Line($"int width = {InstanceInt(embedding.Dim)};");
            _w.Line("global::Horizon.GeneratedModelSupport.CheckTokens(tokens, vocab);");
            _w.Line("global::Horizon.GeneratedModelSupport.CheckRoom(state, count);");
            _w.Line("if (count == 0)");
            _w.Line("    return;");
            _w.Line("global::Horizon.GeneratedModelSupport.CheckLogits(logits.Length, lastOnly ? 1 : count, vocab);");
            _w.Line();
            bool parallel = AnyParallel(_groups);
            _w.Line("// The residual stream, a norm's output, and a mixer's or MLP's output: (count, width) each.");
            if (parallel)
                _w.Line("// A parallel-residual layer keeps its MLP's output apart from its mixer's until both are added.");
            _w.Line("int size = checked(count * width);");
            _w.Line("float[] residualBuffer = global::System.Buffers.ArrayPool<float>.Shared.Rent(size);");
            _w.Line("float[] normedBuffer = global::System.Buffers.ArrayPool<float>.Shared.Rent(size);");
            _w.Line("float[] branchBuffer = global::System.Buffers.ArrayPool<float>.Shared.Rent(size);");
            if (parallel)
                _w.Line("float[] parallelBuffer = global::System.Buffers.ArrayPool<float>.Shared.Rent(size);");
            _w.Open("try");
            _w.Line("var residual = new global::System.Span<float>(residualBuffer, 0, size);");
            _w.Line("var normed = new global::System.Span<float>(normedBuffer, 0, size);");
            _w.Line("var branch = new global::System.Span<float>(branchBuffer, 0, size);");
            if (parallel)
                _w.Line("var parallel = new global::System.Span<float>(parallelBuffer, 0, size);");
            _w.Line("// Residual-stream hook points: after every layer; one null check per layer when none is installed.");
            _w.Line("global::Horizon.Generation.IResidualHook? hook = state.ResidualHook;");
            _w.Line("int position = state.Length;");
            _w.Line($"global::Horizon.Cpu.CpuKernels.Embedding({embedding.PropertyName}, tokens, residual);");
            string layerOffset = "";
            foreach (var group in _groups)
            {
                EmitGroupForward(group, layerOffset);
                layerOffset += group.Spec.PropertyName + ".Length + ";
            }
            _w.Line();
            _finalNorm.Emitter.EmitForward(_w, _finalNorm.Context, "residual", "normed", Spec.FinalNorm.PropertyName, null, "count");
            _w.Line("if (lastOnly)");
            _w.Line($"    global::Horizon.Cpu.CpuKernels.Linear(normed.Slice((count - 1) * width, width), 1, {Spec.LmHead.PropertyName}, global::System.ReadOnlySpan<float>.Empty, logits.Slice(0, vocab));");
            _w.Line("else");
            _w.Line($"    global::Horizon.Cpu.CpuKernels.Linear(normed, count, {Spec.LmHead.PropertyName}, global::System.ReadOnlySpan<float>.Empty, logits.Slice(0, count * vocab));");
            _w.Close();
            _w.Open("finally");
            _w.Line("global::System.Buffers.ArrayPool<float>.Shared.Return(residualBuffer);");
            _w.Line("global::System.Buffers.ArrayPool<float>.Shared.Return(normedBuffer);");
            _w.Line("global::System.Buffers.ArrayPool<float>.Shared.Return(branchBuffer);");
            if (parallel)
                _w.Line("global::System.Buffers.ArrayPool<float>.Shared.Return(parallelBuffer);");
            _w.Close();
            _w.Line("state.Advance(count);");
            _w.Close();
            _w.Line();
        }

        /// <summary>
        /// <c>ToCuda</c>: the same layers on a CUDA device, built by the runtime's <c>CudaModelBuilder</c> from this
        /// model's typed weights (uploaded as bf16), and <c>CudaUnsupportedReason</c>, null when every node kind of the
        /// spec has CUDA kernels, else the first that has none (ToCuda then throws it in one line).
        /// </summary>
        private void EmitToCuda()
        {
            string? missing = null;
            foreach (var group in _groups)
            {
                foreach (var node in group.Nodes)
                {
                    if (missing is null && node.Emitter.CudaNode(node.Context, "weights." + node.Spec.PropertyName) is null)
                        missing = $"{ClassName}: {node.Context.Description} has no CUDA kernels yet (CUDA runs rms_norm, attention, swiglu_mlp and gla); run this model on the CPU";
                }
            }
            string? finalNorm = _finalNorm.Emitter.CudaNode(_finalNorm.Context, Spec.FinalNorm.PropertyName);
            if (missing is null && finalNorm is null)
                missing = $"{ClassName}: {_finalNorm.Context.Description} has no CUDA kernels yet; run this model on the CPU";
            _w.Line("/// <summary>Null when this model runs on CUDA (<see cref=\"ToCuda\"/>), else why not, in one line.</summary>");
            _w.Line($"public string? CudaUnsupportedReason => {(missing is null ? "null" : Naming.StringLiteral(missing))};");
            _w.Line();
            _w.Line("/// <summary>");
            _w.Line("/// This model on a CUDA device: every weight uploaded once as bf16 (into one device arena), the residual stream");
            _w.Line("/// float32, GEMMs on cuBLAS with float32 accumulation, the mixers on Horizon's kernels. The returned model is");
            _w.Line("/// independent of this one (dispose both).");
            _w.Line("/// </summary>");
            _w.Line("/// <exception cref=\"global::Horizon.HorizonException\">A node kind of the spec has no CUDA kernels (<see cref=\"CudaUnsupportedReason\"/>).</exception>");
            _w.Open("public global::Horizon.ICausalLanguageModel ToCuda(global::Horizon.Cuda.CudaBackend backend)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(backend);");
            _w.Line("global::System.ObjectDisposedException.ThrowIf(_disposed, this);");
            if (missing is not null)
            {
                _w.Line("throw new global::Horizon.HorizonException(CudaUnsupportedReason!);");
                _w.Close();
                _w.Line();
                return;
            }
            var embedding = Spec.Embedding;
            _w.Line($"var builder = new global::Horizon.Cuda.CudaModelBuilder(backend, Info, {InstanceInt(embedding.Vocab)}, {InstanceInt(embedding.Dim)});");
            _w.Open("try");
            _w.Line($"builder.Embedding({embedding.PropertyName});");
            foreach (var group in _groups)
            {
                _w.Open($"for (int index = 0; index < {group.Spec.PropertyName}.Length; index++)");
                _w.Line($"{group.WeightsType} weights = {group.Spec.PropertyName}[index];");
                var flag = group.Spec.ParallelResidual;
                var nodes = group.Nodes;
                _w.Line("builder.AddLayer(");
                _w.Indent();
                for (int i = 0; i < 4; i++)
                    _w.Line(nodes[i].Emitter.CudaNode(nodes[i].Context, "weights." + nodes[i].Spec.PropertyName) + ",");
                _w.Line($"parallelResidual: {InstanceFlag(flag)});");
                _w.Outdent();
                _w.Close();
            }
            _w.Line($"builder.FinalNorm({finalNorm});");
            _w.Line($"builder.LmHead({Spec.LmHead.PropertyName});");
            _w.Line("return builder.Build();");
            _w.Close();
            _w.Open("catch");
            _w.Line("builder.Dispose();");
            _w.Line("throw;");
            _w.Close();
            _w.Close();
            _w.Line();
        }

        /// <param name="layerOffset">C# for the layers of the groups before this one, each followed by " + " (empty for the first).</param>
        private void EmitGroupForward(GroupPlan group, string layerOffset)
        {
            bool stateful = group.StatefulNodes.Any();
            _w.Line();
            _w.Line($"// Block group '{group.Spec.Name}': {LayerFormula(group)}.");
            _w.Open($"for (int index = 0; index < {group.Spec.PropertyName}.Length; index++)");
            _w.Line($"{group.WeightsType} weights = {group.Spec.PropertyName}[index];");
            if (stateful)
                _w.Line($"{group.StateType} layerState = state.{group.Spec.PropertyName}[index];");
            EmitLayerBody(group, "count", () => EmitNodeForward(group.Nodes[1], "normed", "branch"));
            _w.Line("if (hook is not null)");
            _w.Line($"    hook.AfterLayer({layerOffset}index, position, count, width, residual);");
            _w.Close();
        }

        /// <summary>What one layer of the group computes, for a comment.</summary>
        private string LayerFormula(GroupPlan group)
        {
            const string sequential = "x += mixer(mixer_norm(x)); x += mlp(mlp_norm(x))";
            const string parallel = "x += mixer(mixer_norm(x)) + mlp(mlp_norm(x))";
            var flag = group.Spec.ParallelResidual;
            return flag.IsAlwaysFalse ? sequential : flag.IsAlwaysTrue ? parallel : $"{parallel} when {flag.Symbol}, else {sequential}";
        }

        /// <summary>Whether some group of <paramref name="groups"/> may add its branches in parallel (Forward then needs a fourth buffer).</summary>
        private static bool AnyParallel(IEnumerable<GroupPlan> groups) => groups.Any(g => !g.Spec.ParallelResidual.IsAlwaysFalse);

        /// <summary>
        /// One layer on <c>residual</c> (rows × width) with the buffers <c>normed</c>, <c>branch</c> (and <c>parallel</c>):
        /// sequential, x += mixer(mixer_norm(x)) then x += mlp(mlp_norm(x)); or parallel (GPT-NeoX), both branches from the
        /// layer's input, x += mixer(mixer_norm(x)) + mlp(mlp_norm(x)). <paramref name="emitMixer"/> writes the mixer
        /// call, normed → branch.
        /// </summary>
        private void EmitLayerBody(GroupPlan group, string count, System.Action emitMixer)
        {
            var nodes = group.Nodes;
            void Sequential()
            {
                EmitNodeForward(nodes[0], "residual", "normed", count);
                emitMixer();
                _w.Line("global::Horizon.Cpu.CpuKernels.Add(residual, branch);");
                EmitNodeForward(nodes[2], "residual", "normed", count);
                EmitNodeForward(nodes[3], "normed", "branch", count);
                _w.Line("global::Horizon.Cpu.CpuKernels.Add(residual, branch);");
            }
            void Parallel()
            {
                EmitNodeForward(nodes[0], "residual", "normed", count);
                emitMixer();
                EmitNodeForward(nodes[2], "residual", "normed", count);
                EmitNodeForward(nodes[3], "normed", "parallel", count);
                _w.Line("global::Horizon.Cpu.CpuKernels.Add(residual, branch);");
                _w.Line("global::Horizon.Cpu.CpuKernels.Add(residual, parallel);");
            }
            var flag = group.Spec.ParallelResidual;
            if (flag.IsAlwaysFalse)
            {
                Sequential();
            }
            else if (flag.IsAlwaysTrue)
            {
                Parallel();
            }
            else
            {
                _w.Open($"if ({InstanceFlag(flag)})");
                Parallel();
                _w.Close();
                _w.Open("else");
                Sequential();
                _w.Close();
            }
        }

        private void EmitNodeForward(NodePlan node, string input, string output, string count = "count")
        {
            string? state = node.Emitter.StateType is null ? null : "layerState." + node.Spec.PropertyName;
            node.Emitter.EmitForward(_w, node.Context, input, output, "weights." + node.Spec.PropertyName, state, count);
        }

        private void EmitInterfaceMembers()
        {
            _w.Line("global::Horizon.IModelState global::Horizon.ICausalLanguageModel.CreateState(int capacity) => CreateState(capacity);");
            _w.Line();
            _w.Open("void global::Horizon.ICausalLanguageModel.Forward(global::System.ReadOnlySpan<int> tokens, global::Horizon.IModelState state, global::System.Span<float> logits)");
            _w.Line("global::System.ArgumentNullException.ThrowIfNull(state);");
            _w.Line("if (state is not State own)");
            _w.Line($"    throw new global::System.ArgumentException(\"the state is a \" + state.GetType().FullName + \", not a {Spec.Namespace}.{ClassName}.State; use this model's CreateState\", nameof(state));");
            _w.Line("Forward(tokens, own, logits);");
            _w.Close();
            _w.Line();
            // A two-level model's rows are not one per token: it has no last-row head of its own.
            if (Spec.Levels is null)
            {
                _w.Open("void global::Horizon.ILastLogitsModel.ForwardLast(global::System.ReadOnlySpan<int> tokens, global::Horizon.IModelState state, global::System.Span<float> lastLogits)");
                _w.Line("global::System.ArgumentNullException.ThrowIfNull(state);");
                _w.Line("if (state is not State own)");
                _w.Line($"    throw new global::System.ArgumentException(\"the state is a \" + state.GetType().FullName + \", not a {Spec.Namespace}.{ClassName}.State; use this model's CreateState\", nameof(state));");
                _w.Line("ForwardLast(tokens, own, lastLogits);");
                _w.Close();
                _w.Line();
            }
        }

        private void EmitDispose()
        {
            _w.Line("/// <summary>Releases the model directory (its memory-mapped checkpoint files); the weights are unusable after.</summary>");
            _w.Open("public void Dispose()");
            _w.Line("if (_disposed)");
            _w.Line("    return;");
            _w.Line("_disposed = true;");
            _w.Line("_directory.Dispose();");
            _w.Close();
        }

        private void EmitRegistration()
        {
            _w.Line($"/// <summary>Registers {ClassName} for its architectures when the assembly loads, so ModelRegistry.Load finds it.</summary>");
            _w.Open($"file static class {ClassName}Registration");
            // Registering when the module loads is the point: a host that never names the class still loads it by
            // architecture. (CA2255 warns about module initializers in libraries; analyzers skip generated code.)
            _w.Line("[global::System.Runtime.CompilerServices.ModuleInitializer]");
            _w.Open("internal static void Register()");
            _w.Line($"foreach (string architecture in {ClassName}.Architectures)");
            _w.Line($"    global::Horizon.ModelRegistry.Register(architecture, static directory => {ClassName}.Load(directory));");
            _w.Close();
            _w.Close();
        }
    }
}
