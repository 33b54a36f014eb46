using System.Collections.Generic;
using Horizon.Generators.Json;
using Horizon.Generators.Model;

namespace Horizon.Generators.Parser
{
    // Symbols: declaration, defaults, binding order, compile-time values, and every reference to a symbol.
    internal sealed partial class SpecParser
    {
        private readonly Dictionary<string, SymbolDeclaration> _symbols = new Dictionary<string, SymbolDeclaration>(System.StringComparer.Ordinal);
        private readonly List<SymbolDeclaration> _declarationOrder = new List<SymbolDeclaration>();
        private readonly List<SymbolDeclaration> _bindingOrder = new List<SymbolDeclaration>();
        private bool _symbolsValid = true;

        /// <summary>A symbol while the spec is being read: the spec record plus what diagnostics need.</summary>
        private sealed class SymbolDeclaration
        {
            public SymbolDeclaration(string name, JsonProperty property)
            {
                Name = name;
                Property = property;
            }

            public string Name { get; }

            public JsonProperty Property { get; }

            /// <summary>Null when "type" is invalid (already reported): uses of the symbol are then not type-checked.</summary>
            public SymbolType? Type { get; set; } = SymbolType.Int;

            public string? ConfigKey { get; set; }

            public JsonNode? DefaultNode { get; set; }

            public IntExpression? IntDefault { get; set; }

            public double? FloatDefault { get; set; }

            /// <summary>A float default that names another float symbol.</summary>
            public string? FloatDefaultSymbol { get; set; }

            public bool? BoolDefault { get; set; }

            /// <summary>The activation name a gelu symbol defaults to.</summary>
            public string? GeluDefault { get; set; }

            /// <summary>The value at compile time: only for an int symbol without a config key whose default is known.</summary>
            public long? Known { get; set; }
        }

        private void ReadSymbols(JsonNode? node)
        {
            if (node is null)
                return;
            if (node is not JsonObject symbols)
            {
                Report(DiagnosticDescriptors.InvalidValue, node, $"\"symbols\" must be an object mapping names to {{\"config\", \"type\", \"default\"}}, found {node.Describe()}");
                _symbolsValid = false;
                return;
            }

            // Declare every symbol before reading any default, so defaults may refer to symbols declared later.
            foreach (var property in symbols.Properties)
            {
                string name = property.Name;
                if (_symbols.TryGetValue(name, out var first))
                {
                    ReportAtName(DiagnosticDescriptors.DuplicateName, property,
                        $"symbol '{name}' is declared twice (first at line {LineOf(first.Property.NameStart)})");
                    continue;
                }
                var symbol = new SymbolDeclaration(name, property);
                _symbols.Add(name, symbol);
                _declarationOrder.Add(symbol);
                DeclareSymbol(symbol);
                if (!Naming.IsSpecName(name))
                {
                    ReportAtName(DiagnosticDescriptors.InvalidValue, property,
                        $"symbol name \"{name}\" must be ASCII letters, digits and underscores, starting with a letter (it becomes a C# property)");
                    _symbolsValid = false;
                    // Still declared, untyped: its uses are then neither "not declared" nor of the wrong type.
                    symbol.Type = null;
                }
            }

            foreach (var symbol in _declarationOrder)
                ReadDefault(symbol);
            OrderSymbols();
            EvaluateKnownValues();
        }

        private void DeclareSymbol(SymbolDeclaration symbol)
        {
            string what = $"symbol '{symbol.Name}'";
            if (symbol.Property.Value is not JsonObject body)
            {
                Report(DiagnosticDescriptors.InvalidValue, symbol.Property.Value,
                    $"{what} must be an object such as {{\"config\": \"{symbol.Name}\"}}, found {symbol.Property.Value.Describe()}");
                _symbolsValid = false;
                symbol.Type = null;
                return;
            }
            var reader = new ObjectReader(this, body, what);
            if (reader.Optional("config") is JsonNode configNode)
            {
                symbol.ConfigKey = ReadString(configNode, $"\"config\" of {what}");
                if (symbol.ConfigKey is { Length: 0 })
                {
                    Report(DiagnosticDescriptors.InvalidValue, configNode, $"\"config\" of {what} must name a config.json key, found an empty string");
                    symbol.ConfigKey = null;
                }
                else if (symbol.ConfigKey is string path && path.IndexOf('.') >= 0 && System.Array.IndexOf(path.Split('.'), "") >= 0)
                {
                    // "block_decoder.config.hidden_size" is a path into nested objects of config.json.
                    Report(DiagnosticDescriptors.InvalidValue, configNode,
                        $"\"config\" of {what} is \"{path}\": a dotted key is a path into nested objects of config.json (\"block_decoder.config.hidden_size\"), and none of its parts may be empty");
                    symbol.ConfigKey = null;
                    _symbolsValid = false;
                }
            }
            if (reader.Optional("type") is JsonNode typeNode)
            {
                string? type = ReadString(typeNode, $"\"type\" of {what}");
                switch (type)
                {
                    case "int": symbol.Type = SymbolType.Int; break;
                    case "float": symbol.Type = SymbolType.Float; break;
                    case "bool": symbol.Type = SymbolType.Bool; break;
                    case "gelu": symbol.Type = SymbolType.Gelu; break;
                    default:
                        if (type is not null)
                            Report(DiagnosticDescriptors.InvalidValue, typeNode, $"\"type\" of {what} must be \"int\", \"float\", \"bool\" or \"gelu\", found \"{type}\"");
                        symbol.Type = null;
                        _symbolsValid = false;
                        break;
                }
            }
            symbol.DefaultNode = reader.Optional("default");
            // A float that defaults to null may be absent: it is typed float? and fits only where a value is optional.
            if (symbol.Type == SymbolType.Float && symbol.DefaultNode is { Kind: JsonKind.Null })
                symbol.Type = SymbolType.OptionalFloat;
            reader.ReportUnknown();
            if (reader.Property("config") is null && symbol.DefaultNode is null)
                Report(DiagnosticDescriptors.MissingProperty, body.Start, 1, what, "config", " or \"default\" (a symbol is bound from a config.json key, a default, or both)");
        }

        private void ReadDefault(SymbolDeclaration symbol)
        {
            var node = symbol.DefaultNode;
            if (node is null || symbol.Type is null)
                return;
            string what = $"the default of symbol '{symbol.Name}'";
            switch (symbol.Type.Value)
            {
                case SymbolType.Int:
                    if (node is JsonNumber number)
                        symbol.IntDefault = ReadIntLiteral(number, what) is int literal ? IntExpression.Of(IntValue.Of(literal)) : null;
                    else if (node is JsonString text)
                        symbol.IntDefault = ReadIntExpression(text, what);
                    else
                        Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a positive integer or an expression such as \"a\", \"a / b\" or \"a * b\", found {node.Describe()}");
                    if (symbol.IntDefault is null)
                        _symbolsValid = false;
                    break;
                case SymbolType.Float:
                    if (node is JsonNumber real && ReadFloatLiteral(real, what, allowNegative: true) is double value)
                        symbol.FloatDefault = value;
                    else if (node is JsonString reference && Naming.IsSpecName(reference.Value))
                    {
                        // Another float symbol: a fallback chain of config keys (norm_eps, else rms_norm_eps).
                        if (ResolveSymbol(reference.Value, SymbolType.Float, what, At(node)))
                            symbol.FloatDefaultSymbol = reference.Value;
                    }
                    else if (node is not JsonNumber)
                        Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a number, null or the name of a float symbol (the symbol is a float), found {Found(node)}");
                    if (symbol.FloatDefault is null && symbol.FloatDefaultSymbol is null)
                        _symbolsValid = false;
                    break;
                case SymbolType.OptionalFloat:
                    // "default": null, seen when the symbol was declared: nothing more to read.
                    break;
                case SymbolType.Gelu:
                    if (node is JsonString activation && System.Array.IndexOf(GeluActivations, activation.Value) >= 0)
                        symbol.GeluDefault = activation.Value;
                    else
                    {
                        Report(DiagnosticDescriptors.InvalidValue, node,
                            $"{what} must be an activation name ({string.Join(", ", GeluActivations)}; the symbol is a gelu), found {Found(node)}");
                        _symbolsValid = false;
                    }
                    break;
                case SymbolType.Bool:
                    if (node.Kind == JsonKind.True || node.Kind == JsonKind.False)
                        symbol.BoolDefault = node.Kind == JsonKind.True;
                    else
                    {
                        Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be true or false (the symbol is a bool), found {node.Describe()}");
                        _symbolsValid = false;
                    }
                    break;
            }
        }

        /// <summary>
        /// The activation names a gelu symbol takes (transformers' ACT2FN spelling): gelu is the exact GELU, the others
        /// its tanh approximation. The runtime's GeneratedModelSupport.GeluActivations lists the same names.
        /// </summary>
        internal static readonly string[] GeluActivations = { "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh" };

        /// <summary>The operators of an int default, as written.</summary>
        private static readonly Dictionary<string, IntOperator> IntOperators = new Dictionary<string, IntOperator>(System.StringComparer.Ordinal)
        {
            ["*"] = IntOperator.Multiply,
            ["/"] = IntOperator.Divide,
            ["//"] = IntOperator.FloorDivide,
            ["round_up_to"] = IntOperator.RoundUpTo,
        };

        /// <summary>
        /// "a", or operands joined by operators evaluated left to right ("a * b // 3 round_up_to 256"), where the
        /// operands are int symbols or positive integers.
        /// </summary>
        private IntExpression? ReadIntExpression(JsonString node, string what)
        {
            var tokens = Tokenize(node.Value);
            bool shapeOk = tokens is not null && tokens.Count % 2 == 1;
            for (int i = 0; shapeOk && i < tokens!.Count; i++)
                shapeOk = i % 2 == 0 ? IsOperand(tokens[i].Text) : IntOperators.ContainsKey(tokens[i].Text);
            if (!shapeOk)
            {
                Report(DiagnosticDescriptors.InvalidValue, node,
                    $"{what} must be a symbol name or operands joined by *, /, // or round_up_to (\"a / b\", \"a * b // 3 round_up_to 256\"; operands: int symbols or positive integers), found \"{node.Value}\"");
                return null;
            }
            var first = ReadOperand(node, tokens![0], what);
            var operations = new List<IntOperation>();
            bool valid = first is not null;
            for (int i = 1; i < tokens.Count; i += 2)
            {
                var operand = ReadOperand(node, tokens[i + 1], what);
                if (operand is null)
                    valid = false;
                else
                    operations.Add(new IntOperation(IntOperators[tokens[i].Text], operand));
            }
            return valid ? new IntExpression(first!, operations.ToEquatableArray()) : null;
        }

        private IntValue? ReadOperand(JsonString node, (string Text, int Index) token, string what)
        {
            var at = InsideString(node, token.Index, token.Text.Length);
            if (token.Text[0] >= '0' && token.Text[0] <= '9')
            {
                if (!int.TryParse(token.Text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int literal) || literal <= 0)
                {
                    _diagnostics.Add(new DiagnosticInfo(DiagnosticDescriptors.InvalidValue.Id, at,
                        new EquatableArray<string>(new[] { $"{what}: {token.Text} must be a positive integer no larger than {int.MaxValue}" })));
                    return null;
                }
                return IntValue.Of(literal);
            }
            return ResolveSymbol(token.Text, SymbolType.Int, $"an operand of {what}", at) ? IntValue.OfSymbol(token.Text) : null;
        }

        private static bool IsOperand(string token) => !IntOperators.ContainsKey(token);

        private static List<(string Text, int Index)>? Tokenize(string text)
        {
            var tokens = new List<(string, int)>();
            int i = 0;
            while (i < text.Length)
            {
                char c = text[i];
                if (c == ' ' || c == '\t')
                {
                    i++;
                }
                else if (c == '/' && i + 1 < text.Length && text[i + 1] == '/')
                {
                    tokens.Add(("//", i));
                    i += 2;
                }
                else if (c == '/' || c == '*')
                {
                    tokens.Add((c.ToString(), i));
                    i++;
                }
                else if (IsWordChar(c))
                {
                    int start = i;
                    while (i < text.Length && IsWordChar(text[i]))
                        i++;
                    string word = text.Substring(start, i - start);
                    bool numeric = word[0] >= '0' && word[0] <= '9';
                    // A word is a number or a name, not a mix such as "2x".
                    foreach (char w in word)
                    {
                        if (numeric && !(w >= '0' && w <= '9'))
                            return null;
                    }
                    tokens.Add((word, start));
                }
                else
                {
                    return null;
                }
            }
            return tokens.Count == 0 ? null : tokens;
        }

        private static bool IsWordChar(char c) =>
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';

        /// <summary>
        /// The location of characters inside a string value, when the JSON text spells the string without escapes
        /// (so value offsets are text offsets); otherwise the whole string.
        /// </summary>
        private LocationInfo InsideString(JsonString node, int index, int length)
        {
            int contentStart = node.Start + 1;
            int contentLength = node.End - node.Start - 2;
            if (contentLength == node.Value.Length && string.CompareOrdinal(_text, contentStart, node.Value, 0, contentLength) == 0)
                return At(contentStart + index, length);
            return At(node);
        }

        /// <summary>Binding order: a symbol after every symbol its default uses (declaration order otherwise).</summary>
        private void OrderSymbols()
        {
            var state = new Dictionary<SymbolDeclaration, int>(); // 1: being visited, 2: done
            var path = new List<SymbolDeclaration>();
            foreach (var symbol in _declarationOrder)
                Visit(symbol);

            void Visit(SymbolDeclaration symbol)
            {
                state.TryGetValue(symbol, out int mark);
                if (mark == 2)
                    return;
                if (mark == 1)
                {
                    int first = path.IndexOf(symbol);
                    var names = new List<string>();
                    for (int i = first; i < path.Count; i++)
                        names.Add(path[i].Name);
                    names.Add(symbol.Name);
                    Report(DiagnosticDescriptors.InvalidValue, symbol.DefaultNode!,
                        $"the default of symbol '{symbol.Name}' depends on itself ({string.Join(" → ", names)}); a chain of defaults must end in a config key or a number");
                    _symbolsValid = false;
                    return;
                }
                state[symbol] = 1;
                path.Add(symbol);
                foreach (var dependency in Dependencies(symbol))
                    Visit(dependency);
                path.RemoveAt(path.Count - 1);
                state[symbol] = 2;
                _bindingOrder.Add(symbol);
            }
        }

        private IEnumerable<SymbolDeclaration> Dependencies(SymbolDeclaration symbol)
        {
            if (symbol.FloatDefaultSymbol is string fallback && _symbols.TryGetValue(fallback, out var fallbackSymbol))
                yield return fallbackSymbol;
            var expression = symbol.IntDefault;
            if (expression is null)
                yield break;
            if (expression.First.Symbol is string first && _symbols.TryGetValue(first, out var firstSymbol))
                yield return firstSymbol;
            foreach (var operation in expression.Operations)
            {
                if (operation.Operand.Symbol is string operand && _symbols.TryGetValue(operand, out var operandSymbol))
                    yield return operandSymbol;
            }
        }

        /// <summary>
        /// Values known at compile time (symbols without a config key, all the way down), so sizes that cannot
        /// divide are errors in the build rather than at load.
        /// </summary>
        private void EvaluateKnownValues()
        {
            foreach (var symbol in _bindingOrder)
            {
                var expression = symbol.IntDefault;
                if (symbol.Type != SymbolType.Int || expression is null)
                    continue;
                // A default is checked whenever its operands are known, even if config.json usually overrides it:
                // a config without the key would otherwise fail at load.
                long? value = EvaluateDefault(symbol, expression);
                if (symbol.ConfigKey is null)
                    symbol.Known = value;
            }
        }

        private long? EvaluateDefault(SymbolDeclaration symbol, IntExpression expression)
        {
            long? value = Known(expression.First);
            string text = OperandText(expression.First);
            bool composite = false;
            foreach (var operation in expression.Operations)
            {
                long? right = Known(operation.Operand);
                if (value is null || right is null)
                    return null;
                // How messages name the value so far: "64", "hidden (64)", "hidden * 2 (128)".
                string left = !composite && expression.First.Symbol is null
                    ? value.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)
                    : $"{text} ({value.Value})";
                switch (operation.Operator)
                {
                    case IntOperator.Divide:
                        if (value.Value % right.Value != 0)
                        {
                            Report(DiagnosticDescriptors.SizeDoesNotDivide, symbol.DefaultNode!,
                                $"the default of symbol '{symbol.Name}' is {left} / {Describe(operation.Operand, right.Value)}, which does not divide evenly");
                            _symbolsValid = false;
                            return null;
                        }
                        value /= right.Value;
                        break;
                    case IntOperator.FloorDivide:
                        value /= right.Value;
                        break;
                    case IntOperator.Multiply:
                        value *= right.Value;
                        break;
                    default:
                        value = (value.Value + right.Value - 1) / right.Value * right.Value;
                        break;
                }
                if (value.Value > int.MaxValue)
                {
                    Report(DiagnosticDescriptors.InvalidValue, symbol.DefaultNode!,
                        $"the default of symbol '{symbol.Name}' is {left} {OperatorText(operation.Operator)} {right.Value} = {value.Value}, larger than the largest int ({int.MaxValue})");
                    _symbolsValid = false;
                    return null;
                }
                text = $"{text} {OperatorText(operation.Operator)} {OperandText(operation.Operand)}";
                composite = true;
            }
            return value;
        }

        private static string OperandText(IntValue value) => value.Symbol ?? Naming.IntLiteral(value.Literal);

        internal static string OperatorText(IntOperator op) => op switch
        {
            IntOperator.Multiply => "*",
            IntOperator.Divide => "/",
            IntOperator.FloorDivide => "//",
            _ => "round_up_to",
        };

        /// <summary>The compile-time value of a size, when there is one.</summary>
        private long? Known(IntValue value)
        {
            if (value.Symbol is null)
                return value.Literal;
            return _symbols.TryGetValue(value.Symbol, out var symbol) ? symbol.Known : null;
        }

        private static string Describe(IntValue value, long known) =>
            value.Symbol is null ? known.ToString(System.Globalization.CultureInfo.InvariantCulture) : $"{value.Symbol} ({known})";

        private EquatableArray<SymbolSpec> SymbolSpecs()
        {
            var specs = new List<SymbolSpec>();
            foreach (var symbol in _declarationOrder)
            {
                specs.Add(new SymbolSpec(
                    symbol.Name,
                    Naming.ToPascalCase(symbol.Name),
                    symbol.Type ?? SymbolType.Int,
                    symbol.ConfigKey,
                    symbol.IntDefault,
                    symbol.FloatDefault,
                    symbol.FloatDefaultSymbol,
                    symbol.BoolDefault,
                    symbol.GeluDefault));
            }
            return specs.ToEquatableArray();
        }

        private EquatableArray<string> BindingOrder()
        {
            var names = new List<string>();
            foreach (var symbol in _bindingOrder)
                names.Add(symbol.Name);
            return names.ToEquatableArray();
        }

        // ---- References: sizes, floats and flags --------------------------------------------------------------

        /// <summary>
        /// Checks that <paramref name="name"/> is a declared symbol of type <paramref name="expected"/>; reports
        /// HZ0006 (not declared) or HZ0008 (another type) at <paramref name="at"/> otherwise.
        /// </summary>
        private bool ResolveSymbol(string name, SymbolType expected, string what, LocationInfo at)
        {
            if (!_symbols.TryGetValue(name, out var symbol))
            {
                string? suggestion = Suggestions.Closest(name, _symbols.Keys);
                _diagnostics.Add(new DiagnosticInfo(DiagnosticDescriptors.UnboundSymbol.Id, at, new EquatableArray<string>(new[]
                {
                    what, name, suggestion is null ? "" : $" (did you mean '{suggestion}'?)",
                })));
                return false;
            }
            if (symbol.Type is null)
                return false; // its "type" is invalid and already reported
            if (symbol.Type != expected)
            {
                _diagnostics.Add(new DiagnosticInfo(DiagnosticDescriptors.SymbolTypeMismatch.Id, at, new EquatableArray<string>(new[]
                {
                    what, TypeWords(expected), name, TypeName(symbol.Type.Value),
                })));
                return false;
            }
            return true;
        }

        private static string TypeWords(SymbolType type) => type switch
        {
            SymbolType.Int => "an int (a size)",
            SymbolType.Float => "a float",
            SymbolType.OptionalFloat => "a float or null",
            SymbolType.Gelu => "a GELU variant (a gelu symbol)",
            _ => "a bool",
        };

        private static string TypeName(SymbolType type) => type switch
        {
            SymbolType.Int => "int",
            SymbolType.Float => "float",
            SymbolType.OptionalFloat => "a float that defaults to null",
            SymbolType.Gelu => "gelu",
            _ => "bool",
        };

        /// <summary>A size: a positive integer literal or the name of an int symbol.</summary>
        internal IntValue? ReadSize(JsonNode? node, string what)
        {
            switch (node)
            {
                case null:
                    return null;
                case JsonNumber number:
                    return ReadIntLiteral(number, what) is int literal ? IntValue.Of(literal) : null;
                case JsonString text:
                    if (!Naming.IsSpecName(text.Value))
                    {
                        bool expression = text.Value.IndexOf('/') >= 0 || text.Value.IndexOf('*') >= 0;
                        Report(DiagnosticDescriptors.InvalidValue, node, expression
                            ? $"{what} must name a symbol, found \"{text.Value}\"; an expression belongs in a symbol's \"default\""
                            : $"{what} must be a positive integer or the name of an int symbol, found \"{text.Value}\"");
                        return null;
                    }
                    return ResolveSymbol(text.Value, SymbolType.Int, what, At(node)) ? IntValue.OfSymbol(text.Value) : null;
                default:
                    Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a positive integer or the name of an int symbol, found {node.Describe()}");
                    return null;
            }
        }

        /// <summary>A float: a number literal or the name of a float symbol.</summary>
        internal FloatValue? ReadFloat(JsonNode? node, string what)
        {
            switch (node)
            {
                case null:
                    return null;
                case JsonNumber number:
                    return ReadFloatLiteral(number, what, allowNegative: false) is double value ? new FloatValue(value, null) : null;
                case JsonString text when Naming.IsSpecName(text.Value):
                    return ResolveSymbol(text.Value, SymbolType.Float, what, At(node)) ? new FloatValue(0, text.Value) : null;
                default:
                    Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a number or the name of a float symbol, found {Found(node)}");
                    return null;
            }
        }

        /// <summary>
        /// A float that may be absent (gla's clamp_min): a number, negative allowed, or the name of a float symbol,
        /// including one that defaults to null.
        /// </summary>
        internal FloatValue? ReadOptionalSignedFloat(JsonNode? node, string what)
        {
            switch (node)
            {
                case null:
                    return null;
                case JsonNumber number:
                    return ReadFloatLiteral(number, what, allowNegative: true) is double value ? new FloatValue(value, null) : null;
                case JsonString text when Naming.IsSpecName(text.Value):
                    if (_symbols.TryGetValue(text.Value, out var symbol) && symbol.Type == SymbolType.OptionalFloat)
                        return new FloatValue(0, text.Value);
                    return ResolveSymbol(text.Value, SymbolType.Float, what, At(node)) ? new FloatValue(0, text.Value) : null;
                default:
                    Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a number or the name of a float symbol, found {Found(node)}");
                    return null;
            }
        }

        /// <summary>The type of a declared symbol, or null when it is not declared or its type is invalid.</summary>
        internal SymbolType? TypeOfSymbol(string name) => _symbols.TryGetValue(name, out var symbol) ? symbol.Type : null;

        /// <summary>The compile-time value of a float, when it is a literal.</summary>
        private static double? Known(FloatValue value) => value.Symbol is null ? value.Literal : null;

        /// <summary>A flag: true, false, or the name of a bool symbol.</summary>
        internal FlagValue? ReadFlag(JsonNode? node, string what)
        {
            switch (node)
            {
                case null:
                    return null;
                case JsonLiteral literal when literal.Kind != JsonKind.Null:
                    return new FlagValue(literal.Kind == JsonKind.True, null);
                case JsonString text when Naming.IsSpecName(text.Value):
                    return ResolveSymbol(text.Value, SymbolType.Bool, what, At(node)) ? new FlagValue(false, text.Value) : null;
                default:
                    Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be true, false or the name of a bool symbol, found {Found(node)}");
                    return null;
            }
        }

        private int? ReadIntLiteral(JsonNumber number, string what)
        {
            if (number.Integer is not long value)
            {
                Report(DiagnosticDescriptors.InvalidValue, number, $"{what} must be a whole number, found {number.Text}");
                return null;
            }
            if (value <= 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, number, $"{what} must be positive, found {number.Text}");
                return null;
            }
            if (value > int.MaxValue)
            {
                Report(DiagnosticDescriptors.InvalidValue, number, $"{what} is {number.Text}, larger than the largest int ({int.MaxValue})");
                return null;
            }
            return (int)value;
        }

        private double? ReadFloatLiteral(JsonNumber number, string what, bool allowNegative)
        {
            double value = number.Value;
            if (double.IsInfinity(value) || double.IsNaN(value) || System.Math.Abs(value) > float.MaxValue)
            {
                Report(DiagnosticDescriptors.InvalidValue, number, $"{what} is {number.Text}, outside the range of a float");
                return null;
            }
            if (!allowNegative && value < 0)
            {
                Report(DiagnosticDescriptors.InvalidValue, number, $"{what} must not be negative, found {number.Text}");
                return null;
            }
            return value;
        }

        private static string Found(JsonNode node) => node is JsonString text ? $"\"{text.Value}\"" : node.Describe();
    }
}
