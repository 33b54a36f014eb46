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

            public bool? BoolDefault { get; set; }

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
            }
            if (reader.Optional("type") is JsonNode typeNode)
            {
                string? type = ReadString(typeNode, $"\"type\" of {what}");
                switch (type)
                {
                    case "int": symbol.Type = SymbolType.Int; break;
                    case "float": symbol.Type = SymbolType.Float; break;
                    case "bool": symbol.Type = SymbolType.Bool; break;
                    default:
                        if (type is not null)
                            Report(DiagnosticDescriptors.InvalidValue, typeNode, $"\"type\" of {what} must be \"int\", \"float\" or \"bool\", found \"{type}\"");
                        symbol.Type = null;
                        _symbolsValid = false;
                        break;
                }
            }
            symbol.DefaultNode = reader.Optional("default");
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
                        symbol.IntDefault = ReadIntLiteral(number, what) is int literal ? new IntExpression(IntValue.Of(literal), IntOperator.None, null) : null;
                    else if (node is JsonString text)
                        symbol.IntDefault = ReadIntExpression(text, what);
                    else
                        Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a positive integer or an expression (\"a\", \"a / b\", \"a * b\"), found {node.Describe()}");
                    if (symbol.IntDefault is null)
                        _symbolsValid = false;
                    break;
                case SymbolType.Float:
                    if (node is JsonNumber real && ReadFloatLiteral(real, what, allowNegative: true) is double value)
                        symbol.FloatDefault = value;
                    else if (node is not JsonNumber)
                        Report(DiagnosticDescriptors.InvalidValue, node, $"{what} must be a number (the symbol is a float), found {node.Describe()}");
                    if (symbol.FloatDefault is null)
                        _symbolsValid = false;
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

        /// <summary>"a", "a / b" or "a * b", where a and b are int symbols or positive integers.</summary>
        private IntExpression? ReadIntExpression(JsonString node, string what)
        {
            var tokens = Tokenize(node.Value);
            bool shapeOk = tokens is not null
                && (tokens.Count == 1 || (tokens.Count == 3 && (tokens[1].Text == "/" || tokens[1].Text == "*")))
                && IsOperand(tokens[0].Text) && (tokens.Count == 1 || IsOperand(tokens[2].Text));
            if (!shapeOk)
            {
                Report(DiagnosticDescriptors.InvalidValue, node,
                    $"{what} must be a symbol name, \"a / b\" or \"a * b\" (a and b: int symbols or positive integers), found \"{node.Value}\"");
                return null;
            }
            var left = ReadOperand(node, tokens![0], what);
            if (tokens.Count == 1)
                return left is null ? null : new IntExpression(left, IntOperator.None, null);
            var right = ReadOperand(node, tokens[2], what);
            if (left is null || right is null)
                return null;
            return new IntExpression(left, tokens[1].Text == "/" ? IntOperator.Divide : IntOperator.Multiply, right);
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

        private static bool IsOperand(string token) => token != "/" && token != "*";

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
            var expression = symbol.IntDefault;
            if (expression is null)
                yield break;
            if (expression.Left.Symbol is string left && _symbols.TryGetValue(left, out var leftSymbol))
                yield return leftSymbol;
            if (expression.Right?.Symbol is string right && _symbols.TryGetValue(right, out var rightSymbol))
                yield return rightSymbol;
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
            long? left = Known(expression.Left);
            if (expression.Operator == IntOperator.None)
                return left;
            long? right = Known(expression.Right!);
            if (left is null || right is null)
                return null;
            if (expression.Operator == IntOperator.Divide)
            {
                if (left.Value % right.Value == 0)
                    return left.Value / right.Value;
                Report(DiagnosticDescriptors.SizeDoesNotDivide, symbol.DefaultNode!,
                    $"the default of symbol '{symbol.Name}' is {Describe(expression.Left, left.Value)} / {Describe(expression.Right!, right.Value)}, which does not divide evenly");
                _symbolsValid = false;
                return null;
            }
            if (left.Value * right.Value <= int.MaxValue)
                return left.Value * right.Value;
            Report(DiagnosticDescriptors.InvalidValue, symbol.DefaultNode!,
                $"the default of symbol '{symbol.Name}' is {left.Value} * {right.Value}, larger than the largest int ({int.MaxValue})");
            _symbolsValid = false;
            return null;
        }

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
                    symbol.BoolDefault));
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
            _ => "a bool",
        };

        private static string TypeName(SymbolType type) => type switch
        {
            SymbolType.Int => "int",
            SymbolType.Float => "float",
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
