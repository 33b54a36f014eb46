using System;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

using Horizon.Generators.Model;

namespace Horizon.Generators.Kernels
{
    /// <summary>
    /// Reads the <c>extern "C" __global__</c> function signatures of a CUDA source file: a small tokenizer (comments,
    /// string and character literals and preprocessor lines are skipped; the preprocessor is not run) and a parser of
    /// the declarator between <c>__global__</c> and the kernel's body. Only signatures are read; bodies are skipped
    /// by the token scan, which looks for the next <c>extern "C" __global__</c>.
    /// </summary>
    internal static class KernelSignatureParser
    {
        private enum TokenKind
        {
            Identifier,
            Number,
            Literal,
            Punctuation,
        }

        private readonly struct Token
        {
            public Token(TokenKind kind, string text, int start)
            {
                Kind = kind;
                Text = text;
                Start = start;
            }

            public TokenKind Kind { get; }
            public string Text { get; }
            public int Start { get; }
            public int End => Start + Text.Length;

            public bool Is(string text) => Text == text;
        }

        /// <summary>Qualifiers that do not change how an argument is passed.</summary>
        private static readonly HashSet<string> Qualifiers = new HashSet<string>(StringComparer.Ordinal)
        {
            "const", "volatile", "__restrict__", "__restrict", "restrict",
        };

        /// <summary>Specifiers that may stand before the return type or the name.</summary>
        private static readonly HashSet<string> FunctionSpecifiers = new HashSet<string>(StringComparer.Ordinal)
        {
            "static", "inline", "__inline__", "__noinline__", "__forceinline__",
        };

        /// <summary>Attributes written with an argument list before the kernel's name.</summary>
        private static readonly HashSet<string> AttributesWithArguments = new HashSet<string>(StringComparer.Ordinal)
        {
            "__launch_bounds__", "__maxnreg__", "__cluster_dims__", "__attribute__", "__declspec", "alignas",
        };

        /// <summary>Words that are types, never parameter names (an unnamed parameter ends with one).</summary>
        private static readonly HashSet<string> TypeWords = new HashSet<string>(StringComparer.Ordinal)
        {
            "void", "bool", "char", "short", "int", "long", "float", "double", "signed", "unsigned",
        };

        /// <summary>C types (after qualifiers are removed) the launchers pass, with their C# type.</summary>
        private static readonly Dictionary<string, string> ElementTypes = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["float"] = "float",
            ["double"] = "double",
            ["int"] = "int",
            ["signed"] = "int",
            ["signed int"] = "int",
            ["int32_t"] = "int",
            ["unsigned"] = "uint",
            ["unsigned int"] = "uint",
            ["uint32_t"] = "uint",
            ["long long"] = "long",
            ["long long int"] = "long",
            ["signed long long"] = "long",
            ["signed long long int"] = "long",
            ["int64_t"] = "long",
            ["unsigned long long"] = "ulong",
            ["unsigned long long int"] = "ulong",
            ["uint64_t"] = "ulong",
            ["size_t"] = "ulong",
            ["short"] = "short",
            ["short int"] = "short",
            ["signed short"] = "short",
            ["int16_t"] = "short",
            ["unsigned short"] = "ushort",
            ["unsigned short int"] = "ushort",
            ["uint16_t"] = "ushort",
            ["signed char"] = "sbyte",
            ["int8_t"] = "sbyte",
            ["unsigned char"] = "byte",
            ["uint8_t"] = "byte",
            ["bf16_t"] = "global::Horizon.Cuda.BFloat16",
            ["__nv_bfloat16"] = "global::Horizon.Cuda.BFloat16",
            ["nv_bfloat16"] = "global::Horizon.Cuda.BFloat16",
            ["__half"] = "global::System.Half",
            ["half"] = "global::System.Half",
            ["half_t"] = "global::System.Half",
        };

        /// <summary>Types refused on purpose, with the reason given in HZ1002.</summary>
        private static readonly Dictionary<string, string> RefusedTypes = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["long"] = "'long' is 64 bits on Linux and 32 on Windows; use long long or int",
            ["long int"] = "'long' is 64 bits on Linux and 32 on Windows; use long long or int",
            ["unsigned long"] = "'long' is 64 bits on Linux and 32 on Windows; use unsigned long long or unsigned int",
            ["unsigned long int"] = "'long' is 64 bits on Linux and 32 on Windows; use unsigned long long or unsigned int",
            ["char"] = "plain char may be signed or unsigned; use signed char or unsigned char",
            ["bool"] = "the size of bool is not fixed by C++; pass an int",
        };

        /// <summary>Launcher parameters and locals that a kernel parameter must not be named like in C#.</summary>
        private static readonly HashSet<string> ReservedCSharpNames = new HashSet<string>(StringComparer.Ordinal)
        {
            "grid", "block", "sharedBytes", "stream", "arguments",
        };

        private const string SupportedTypes =
            "supported: float, double, int, unsigned int, long long, unsigned long long, short, unsigned short, signed char, unsigned char, bf16_t, __half, and single pointers to them or to void";

        public static ParsedKernelFile Parse(string path, SourceText text, CancellationToken cancellation)
        {
            string source = text.ToString();
            var tokens = Tokenize(source, cancellation);
            string fileName = FileNameOf(path);
            string module = ModuleOf(fileName);
            var kernels = new List<KernelSignature>();
            var diagnostics = new List<KernelDiagnostic>();
            string className = ClassNameOf(module);

            // Member names of the generated class: fixed ones, then each kernel's launcher and kernel property.
            var members = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                [className] = "the generated class itself",
                ["ModuleName"] = "a member of the generated class",
                ["Symbols"] = "a member of the generated class",
                ["Module"] = "a member of the generated class",
                ["Load"] = "a member of the generated class",
                ["LoadAll"] = "a member of the generated class",
                ["Equals"] = "a member of System.Object",
                ["GetHashCode"] = "a member of System.Object",
                ["GetType"] = "a member of System.Object",
                ["ToString"] = "a member of System.Object",
                ["MemberwiseClone"] = "a member of System.Object",
                ["Finalize"] = "a member of System.Object",
            };
            var symbols = new HashSet<string>(StringComparer.Ordinal);

            for (int i = 0; i + 2 < tokens.Count; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                if (!(tokens[i].Is("extern") && tokens[i + 1].Is("\"C\"") && tokens[i + 2].Is("__global__")))
                    continue;
                int end = ParseKernel(path, text, tokens, i, out var kernel, diagnostics);
                if (kernel is not null)
                {
                    var location = Location(path, text, tokens[i].Start, tokens[end].End);
                    string launcher = kernel.LauncherName, property = kernel.LauncherName + "Kernel";
                    if (!symbols.Add(kernel.Symbol))
                        diagnostics.Add(Diagnostic(KernelDiagnostics.DuplicateKernel, location, $"kernel '{kernel.Symbol}' is defined more than once in {fileName} (preprocessor conditionals are not evaluated)"));
                    else if (members.TryGetValue(launcher, out var owner) || members.TryGetValue(property, out owner))
                        diagnostics.Add(Diagnostic(KernelDiagnostics.DuplicateKernel, location, $"kernel '{kernel.Symbol}' would get the launcher '{launcher}' (and '{property}') in {className}, but that name is taken by {owner}"));
                    else
                    {
                        members.Add(launcher, $"the launcher of '{kernel.Symbol}'");
                        members.Add(property, $"the kernel property of '{kernel.Symbol}'");
                        kernels.Add(kernel);
                    }
                }
                i = Math.Max(i, end);
            }

            return new ParsedKernelFile(
                new KernelModule(path, module, fileName, className, new EquatableArray<KernelSignature>(kernels)),
                new EquatableArray<KernelDiagnostic>(diagnostics));
        }

        /// <summary>
        /// Parses the kernel whose <c>extern</c> is tokens[start]; returns the index of the last token read. kernel is
        /// null for a declaration without a body (nothing to launch) and for a signature with a diagnostic.
        /// </summary>
        private static int ParseKernel(string path, SourceText text, List<Token> tokens, int start, out KernelSignature? kernel, List<KernelDiagnostic> diagnostics)
        {
            kernel = null;
            int j = start + 3;
            var specifiers = new List<string>();
            int nameIndex = -1;
            while (j < tokens.Count)
            {
                var token = tokens[j];
                bool callLike = j + 1 < tokens.Count && tokens[j + 1].Is("(");
                if (token.Kind == TokenKind.Identifier && callLike && (TypeWords.Contains(token.Text) || FunctionSpecifiers.Contains(token.Text)))
                    return Fail(path, text, tokens, start, j + 1, diagnostics, $"expected the kernel's name between '{token.Text}' and '('");
                if (token.Kind == TokenKind.Identifier && callLike)
                {
                    if (AttributesWithArguments.Contains(token.Text))
                    {
                        int close = MatchingParenthesis(tokens, j + 1);
                        if (close < 0)
                            return Fail(path, text, tokens, start, StopOf(tokens, j + 1), diagnostics, $"the arguments of {token.Text} are not closed");
                        j = close + 1;
                        continue;
                    }
                    nameIndex = j;
                    break;
                }
                if (token.Kind == TokenKind.Identifier)
                {
                    specifiers.Add(token.Text);
                    j++;
                    continue;
                }
                if (token.Is("<") || token.Is("template"))
                    return Fail(path, text, tokens, start, j, diagnostics, "a template cannot have C linkage");
                return Fail(path, text, tokens, start, j, diagnostics, $"expected the kernel's name and '(' but found '{token.Text}'");
            }
            if (nameIndex < 0)
                return Fail(path, text, tokens, start, tokens.Count - 1, diagnostics, "the file ends before the kernel's parameter list");

            var returnType = specifiers.FindAll(s => !FunctionSpecifiers.Contains(s));
            if (returnType.Count == 0)
                return Fail(path, text, tokens, start, nameIndex, diagnostics, $"'{tokens[nameIndex].Text}' has no return type (a __global__ function returns void)");
            if (returnType.Count != 1 || returnType[0] != "void")
                return Fail(path, text, tokens, start, nameIndex, diagnostics, $"'{tokens[nameIndex].Text}' returns '{string.Join(" ", returnType)}' (a __global__ function returns void)");

            string symbol = tokens[nameIndex].Text;
            int open = nameIndex + 1;
            int closeParen = MatchingParenthesis(tokens, open);
            if (closeParen < 0)
                return Fail(path, text, tokens, start, StopOf(tokens, open), diagnostics, $"the parameter list of '{symbol}' is not closed");

            int after = closeParen + 1;
            if (after >= tokens.Count)
                return Fail(path, text, tokens, start, closeParen, diagnostics, $"'{symbol}' has no body (the file ends after its parameter list)");
            if (tokens[after].Is(";"))
                return after; // a declaration: the definition, if any, has the launcher
            if (!tokens[after].Is("{"))
                return Fail(path, text, tokens, start, after, diagnostics, $"expected the body of '{symbol}' after its parameter list but found '{tokens[after].Text}'");

            var groups = SplitParameters(tokens, open + 1, closeParen);
            var parameters = new List<KernelParameter>();
            bool supported = true;
            bool isVoidList = groups.Count == 1 && groups[0].Count == 1 && tokens[groups[0][0]].Is("void");
            if (!isVoidList && !(groups.Count == 1 && groups[0].Count == 0))
            {
                var names = new HashSet<string>(StringComparer.Ordinal);
                for (int p = 0; p < groups.Count; p++)
                {
                    var group = groups[p];
                    if (group.Count == 0)
                        return Fail(path, text, tokens, start, closeParen, diagnostics, $"parameter {p + 1} of '{symbol}' is empty");
                    var parameter = ParseParameter(path, text, tokens, group, p, symbol, diagnostics, out bool ok);
                    if (parameter is null)
                    {
                        if (!ok)
                            return Fail(path, text, tokens, start, closeParen, diagnostics, $"parameter {p + 1} of '{symbol}' has no type");
                        supported = false;
                        continue;
                    }
                    string name = parameter.CSharpName;
                    while (!names.Add(name))
                        name += "_";
                    parameters.Add(parameter with { CSharpName = name });
                }
            }
            if (supported)
                kernel = new KernelSignature(symbol, PascalCase(symbol), new EquatableArray<KernelParameter>(parameters));
            return closeParen;
        }

        /// <summary>
        /// One parameter from its tokens. Returns null with ok = true after reporting HZ1002 (an unsupported type), and
        /// null with ok = false when there is no type at all (the caller reports HZ1001).
        /// </summary>
        private static KernelParameter? ParseParameter(string path, SourceText text, List<Token> tokens, List<int> group, int index, string symbol,
            List<KernelDiagnostic> diagnostics, out bool ok)
        {
            ok = true;
            var words = new List<string>();
            int pointers = 0;
            string? refused = null;
            foreach (int t in group)
            {
                var token = tokens[t];
                if (token.Is("*"))
                    pointers++;
                else if (token.Kind == TokenKind.Identifier && Qualifiers.Contains(token.Text))
                    continue;
                else if (token.Is("__grid_constant__"))
                    refused ??= "__grid_constant__ parameters (tensor maps) are not passed by the launchers";
                else if (token.Kind == TokenKind.Identifier)
                    words.Add(token.Text);
                else if (token.Is("&"))
                    refused ??= "a reference cannot be passed from C#; pass a pointer";
                else if (token.Is("["))
                    refused ??= "an array parameter is a pointer in C; declare it as one";
                else if (token.Is("="))
                    refused ??= "default arguments are not supported";
                else
                    refused ??= $"'{token.Text}' in a parameter declaration";
            }
            string declaration = Spell(tokens, group);
            if (words.Count == 0)
            {
                ok = refused is not null;
                if (refused is not null)
                    diagnostics.Add(Diagnostic(KernelDiagnostics.UnsupportedParameterType, Location(path, text, tokens[group[0]].Start, tokens[group[group.Count - 1]].End),
                        symbol, $"#{index + 1}", declaration, refused));
                return null;
            }

            string cName;
            List<string> typeWords;
            string last = words[words.Count - 1];
            if (words.Count >= 2 && !TypeWords.Contains(last) && !ElementTypes.ContainsKey(last))
            {
                cName = last;
                typeWords = words.GetRange(0, words.Count - 1);
            }
            else
            {
                cName = "arg" + (index + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
                typeWords = words;
            }
            string type = string.Join(" ", typeWords);
            string? element = null;
            if (refused is null)
            {
                if (pointers > 1)
                    refused = "a pointer to a pointer";
                else if (type == "void")
                {
                    if (pointers == 1)
                        element = "byte";
                    else
                        refused = "a parameter cannot be void";
                }
                else if (ElementTypes.TryGetValue(type, out var mapped))
                    element = mapped;
                else if (RefusedTypes.TryGetValue(type, out var reason))
                    refused = reason;
                else
                    refused = SupportedTypes;
            }
            if (refused is not null || element is null)
            {
                diagnostics.Add(Diagnostic(KernelDiagnostics.UnsupportedParameterType, Location(path, text, tokens[group[0]].Start, tokens[group[group.Count - 1]].End),
                    symbol, cName, declaration, refused ?? SupportedTypes));
                return null;
            }
            string csharpName = CamelCase(cName);
            if (ReservedCSharpNames.Contains(csharpName))
                csharpName += "_";
            if (SyntaxFacts.GetKeywordKind(csharpName) != SyntaxKind.None)
                csharpName = "@" + csharpName;
            return new KernelParameter(declaration, cName, csharpName, pointers == 1 ? ParameterKind.Pointer : ParameterKind.Value, element);
        }

        private static int Fail(string path, SourceText text, List<Token> tokens, int start, int end, List<KernelDiagnostic> diagnostics, string message)
        {
            end = Math.Max(start, Math.Min(end, tokens.Count - 1));
            diagnostics.Add(Diagnostic(KernelDiagnostics.UnparseableSignature, Location(path, text, tokens[start].Start, tokens[end].End), message));
            return end;
        }

        private static KernelDiagnostic Diagnostic(Microsoft.CodeAnalysis.DiagnosticDescriptor descriptor, KernelLocation location, params string[] arguments) =>
            new KernelDiagnostic(descriptor.Id, location, new EquatableArray<string>(arguments));

        private static KernelLocation Location(string path, SourceText text, int start, int end)
        {
            var span = text.Lines.GetLinePositionSpan(TextSpan.FromBounds(start, end));
            return new KernelLocation(path, start, end - start, span.Start.Line, span.Start.Character, span.End.Line, span.End.Character);
        }

        /// <summary>The index of the ')' that closes the '(' at tokens[open], or −1.</summary>
        private static int MatchingParenthesis(List<Token> tokens, int open)
        {
            int depth = 0;
            for (int k = open; k < tokens.Count; k++)
            {
                if (tokens[k].Is("("))
                    depth++;
                else if (tokens[k].Is(")") && --depth == 0)
                    return k;
                else if (tokens[k].Is("{") || tokens[k].Is("}") || tokens[k].Is(";"))
                    return -1; // a body or a statement: the list was never closed
            }
            return -1;
        }

        /// <summary>
        /// Where an unclosed list starting at tokens[open] was given up: the token before the first '{', '}' or ';' (so
        /// the scan resumes there and later kernels are still read), or the last token.
        /// </summary>
        private static int StopOf(List<Token> tokens, int open)
        {
            for (int k = open; k < tokens.Count; k++)
            {
                if (tokens[k].Is("{") || tokens[k].Is("}") || tokens[k].Is(";"))
                    return Math.Max(open, k - 1);
            }
            return tokens.Count - 1;
        }

        /// <summary>The token indexes of each parameter in (first, end), split at commas outside nested brackets.</summary>
        private static List<List<int>> SplitParameters(List<Token> tokens, int first, int end)
        {
            var groups = new List<List<int>> { new List<int>() };
            int depth = 0;
            for (int k = first; k < end; k++)
            {
                var token = tokens[k];
                if (token.Is("(") || token.Is("[") || token.Is("<"))
                    depth++;
                else if (token.Is(")") || token.Is("]") || token.Is(">"))
                    depth--;
                if (depth == 0 && token.Is(","))
                {
                    groups.Add(new List<int>());
                    continue;
                }
                groups[groups.Count - 1].Add(k);
            }
            return groups;
        }

        /// <summary>The parameter's tokens written back with single spaces between words ("const bf16_t* q").</summary>
        private static string Spell(List<Token> tokens, List<int> group)
        {
            var text = new StringBuilder();
            Token? previous = null;
            foreach (int t in group)
            {
                var token = tokens[t];
                if (previous is Token p && (p.Kind != TokenKind.Punctuation || p.Is("*")) && token.Kind != TokenKind.Punctuation)
                    text.Append(' ');
                text.Append(token.Text);
                previous = token;
            }
            return text.ToString();
        }

        /// <summary>attention_prefill_d64_bf16 → AttentionPrefillD64Bf16; a leading digit gets a 'K'.</summary>
        public static string PascalCase(string name)
        {
            var text = new StringBuilder(name.Length);
            bool upper = true;
            foreach (char c in name)
            {
                if (!char.IsLetterOrDigit(c))
                {
                    upper = true;
                    continue;
                }
                text.Append(upper ? char.ToUpperInvariant(c) : c);
                upper = false;
            }
            if (text.Length == 0 || char.IsDigit(text[0]))
                text.Insert(0, 'K');
            return text.ToString();
        }

        /// <summary>key_count → keyCount, o_part → oPart (a C# parameter name); a name without '_' stays as it is.</summary>
        public static string CamelCase(string name)
        {
            if (name.IndexOf('_') < 0)
                return name;
            string pascal = PascalCase(name);
            return char.ToLowerInvariant(pascal[0]) + pascal.Substring(1);
        }

        /// <summary>The class of a module: attention → CudaAttentionKernels.</summary>
        public static string ClassNameOf(string module) => "Cuda" + PascalCase(module) + "Kernels";

        public static string FileNameOf(string path)
        {
            int slash = Math.Max(path.LastIndexOf('/'), path.LastIndexOf('\\'));
            return slash >= 0 ? path.Substring(slash + 1) : path;
        }

        /// <summary>The module name: the file name without its extension (attention.cu → attention), as native/build_ptx.sh names the PTX.</summary>
        public static string ModuleOf(string fileName)
        {
            int dot = fileName.LastIndexOf('.');
            return dot > 0 ? fileName.Substring(0, dot) : fileName;
        }

        private static List<Token> Tokenize(string s, CancellationToken cancellation)
        {
            var tokens = new List<Token>();
            int i = 0, n = s.Length;
            bool lineStart = true; // only whitespace since the last newline: a '#' starts a directive
            while (i < n)
            {
                if ((i & 0xFFF) == 0)
                    cancellation.ThrowIfCancellationRequested();
                char c = s[i];
                if (c == '\n')
                {
                    lineStart = true;
                    i++;
                    continue;
                }
                if (char.IsWhiteSpace(c))
                {
                    i++;
                    continue;
                }
                if (c == '/' && i + 1 < n && s[i + 1] == '/')
                {
                    while (i < n && s[i] != '\n')
                        i++;
                    continue;
                }
                if (c == '/' && i + 1 < n && s[i + 1] == '*')
                {
                    int close = s.IndexOf("*/", i + 2, StringComparison.Ordinal);
                    i = close < 0 ? n : close + 2;
                    continue;
                }
                if (c == '#' && lineStart)
                {
                    // A directive runs to the end of the line, continued by a backslash before the newline.
                    while (i < n && s[i] != '\n')
                    {
                        if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\n')
                            i++;
                        else if (s[i] == '\\' && i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n')
                            i += 2;
                        i++;
                    }
                    continue;
                }
                lineStart = false;
                int start = i;
                if (char.IsLetter(c) || c == '_')
                {
                    while (i < n && (char.IsLetterOrDigit(s[i]) || s[i] == '_'))
                        i++;
                    tokens.Add(new Token(TokenKind.Identifier, s.Substring(start, i - start), start));
                }
                else if (char.IsDigit(c))
                {
                    while (i < n && (char.IsLetterOrDigit(s[i]) || s[i] == '.' || s[i] == '_'))
                        i++;
                    tokens.Add(new Token(TokenKind.Number, s.Substring(start, i - start), start));
                }
                else if (c == '"' || c == '\'')
                {
                    i++;
                    while (i < n && s[i] != c && s[i] != '\n')
                        i += s[i] == '\\' ? 2 : 1;
                    i = Math.Min(i + 1, n);
                    tokens.Add(new Token(TokenKind.Literal, s.Substring(start, i - start), start));
                }
                else
                {
                    i++;
                    tokens.Add(new Token(TokenKind.Punctuation, s.Substring(start, 1), start));
                }
            }
            return tokens;
        }
    }
}
