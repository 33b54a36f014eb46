using System.Text;
using System.Text.RegularExpressions;
using Horizon.Tokenization;

namespace Horizon.Chat;

/// <summary>One message of a conversation: a role (<c>system</c>, <c>user</c>, <c>assistant</c>, ...) and its text.</summary>
public sealed record ChatTurn(string Role, string Content);

/// <summary>
/// Writes a conversation as the text a chat model was trained on. Horizon has no Jinja engine: it recognises
/// the families of <c>chat_template</c> it supports and formats them in C# — ChatML (Qwen2, Qwen2.5: with the
/// template's default system prompt when the conversation has none) and Llama 3 (header tokens, message text
/// trimmed, BOS first). A model without a template gets <see cref="Plain"/>; any other template is refused by
/// <see cref="FromTemplate"/> with a clear error.
/// </summary>
public abstract class ChatFormat
{
    /// <summary>The family: <c>chatml</c>, <c>llama3</c> or <c>plain</c>.</summary>
    public abstract string Name { get; }

    /// <summary>A whole conversation, as the model's template renders it (<paramref name="addGenerationPrompt"/>: end with the assistant header).</summary>
    public abstract string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt);

    /// <summary>
    /// The text of <paramref name="turns"/> when they follow a conversation whose last assistant turn was closed
    /// with <see cref="EndOfTurn"/>: Render(history + turns) = Render(history) + RenderContinuation(turns).
    /// </summary>
    public abstract string RenderContinuation(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt);

    /// <summary>The text that closes an assistant turn after its content (ChatML: <c>&lt;|im_end|&gt;\n</c>).</summary>
    public abstract string EndOfTurn { get; }

    /// <summary>Special tokens that end the assistant's turn when generated (ChatML: <c>&lt;|im_end|&gt;</c>).</summary>
    public abstract IReadOnlyList<string> StopTokens { get; }

    /// <summary>Strings that end the assistant's turn (the plain format's <c>\nUser:</c>).</summary>
    public virtual IReadOnlyList<string> StopSequences => [];

    /// <summary>ChatML with an optional default system prompt.</summary>
    public static ChatFormat ChatMl(string? defaultSystemPrompt = null) => new ChatMlFormat(defaultSystemPrompt);

    /// <summary>Llama 3 with the given BOS text (<c>&lt;|begin_of_text|&gt;</c>).</summary>
    public static ChatFormat Llama3(string bosToken = "<|begin_of_text|>") => new Llama3Format(bosToken);

    /// <summary><c>User: ...</c> / <c>Assistant: ...</c> lines, for base models without a chat template.</summary>
    public static ChatFormat Plain { get; } = new PlainFormat();

    /// <summary>
    /// The format of a <c>chat_template</c> (tokenizer_config.json): ChatML when it writes <c>&lt;|im_start|&gt;</c> and
    /// <c>&lt;|im_end|&gt;</c>, Llama 3 when it writes <c>&lt;|start_header_id|&gt;</c> and <c>&lt;|eot_id|&gt;</c>, plain when
    /// there is none.
    /// </summary>
    /// <exception cref="HorizonException">A template of another family, or one of these with parts Horizon cannot format.</exception>
    public static ChatFormat FromTemplate(string? template, HorizonTokenizer? tokenizer = null)
    {
        if (string.IsNullOrWhiteSpace(template))
            return Plain;
        if (template.Contains("<|im_start|>", StringComparison.Ordinal) && template.Contains("<|im_end|>", StringComparison.Ordinal))
        {
            if (template.Contains("<think>", StringComparison.Ordinal))
                throw new HorizonException("unsupported chat template: a ChatML template with reasoning blocks (<think>) needs a Jinja engine; Horizon formats plain ChatML (Qwen2) and Llama 3 templates");
            return new ChatMlFormat(DefaultSystemPrompt(template));
        }
        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal) && template.Contains("<|eot_id|>", StringComparison.Ordinal))
        {
            if (template.Contains("Cutting Knowledge Date", StringComparison.Ordinal) || template.Contains("ipython", StringComparison.Ordinal))
                throw new HorizonException("unsupported chat template: the Llama 3.1+ template (date and tool preamble) needs a Jinja engine; Horizon formats plain ChatML (Qwen2) and Llama 3 templates");
            return new Llama3Format(tokenizer?.Config.BosToken ?? "<|begin_of_text|>");
        }
        string start = template.Length > 60 ? template[..60] + "…" : template;
        throw new HorizonException($"unsupported chat template (neither ChatML nor Llama 3; Horizon formats those two without a Jinja engine): {start.ReplaceLineEndings(" ")}");
    }

    /// <summary>The literal system text a ChatML template writes when the conversation has no system message.</summary>
    private static string? DefaultSystemPrompt(string template)
    {
        var match = Regex.Match(template, @"<\|im_start\|>system(?:\\n|\n)([^'""{}<]+?)<\|im_end\|>", RegexOptions.CultureInvariant);
        return match.Success ? match.Groups[1].Value.Replace("\\n", "\n", StringComparison.Ordinal) : null;
    }

    private sealed class ChatMlFormat(string? defaultSystem) : ChatFormat
    {
        public override string Name => "chatml";
        public override string EndOfTurn => "<|im_end|>\n";
        public override IReadOnlyList<string> StopTokens { get; } = ["<|im_end|>"];

        public override string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt)
        {
            var text = new StringBuilder();
            if (defaultSystem is not null && (turns.Count == 0 || turns[0].Role != "system"))
                text.Append("<|im_start|>system\n").Append(defaultSystem).Append("<|im_end|>\n");
            return Append(text, turns, addGenerationPrompt);
        }

        public override string RenderContinuation(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt) => Append(new StringBuilder(), turns, addGenerationPrompt);

        private static string Append(StringBuilder text, IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt)
        {
            foreach (var turn in turns)
                text.Append("<|im_start|>").Append(turn.Role).Append('\n').Append(turn.Content).Append("<|im_end|>\n");
            if (addGenerationPrompt)
                text.Append("<|im_start|>assistant\n");
            return text.ToString();
        }
    }

    private sealed class Llama3Format(string bos) : ChatFormat
    {
        public override string Name => "llama3";
        public override string EndOfTurn => "<|eot_id|>";
        public override IReadOnlyList<string> StopTokens { get; } = ["<|eot_id|>"];

        public override string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt) =>
            Append(new StringBuilder(turns.Count > 0 ? bos : ""), turns, addGenerationPrompt);

        public override string RenderContinuation(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt) => Append(new StringBuilder(), turns, addGenerationPrompt);

        private static string Append(StringBuilder text, IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt)
        {
            // The template trims each message (Jinja's trim: white space at both ends).
            foreach (var turn in turns)
                text.Append("<|start_header_id|>").Append(turn.Role).Append("<|end_header_id|>\n\n").Append(turn.Content.Trim()).Append("<|eot_id|>");
            if (addGenerationPrompt)
                text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
            return text.ToString();
        }
    }

    private sealed class PlainFormat : ChatFormat
    {
        public override string Name => "plain";
        public override string EndOfTurn => "\n";
        public override IReadOnlyList<string> StopTokens { get; } = [];
        public override IReadOnlyList<string> StopSequences { get; } = ["\nUser:"];

        public override string Render(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt) => RenderContinuation(turns, addGenerationPrompt);

        public override string RenderContinuation(IReadOnlyList<ChatTurn> turns, bool addGenerationPrompt)
        {
            var text = new StringBuilder();
            foreach (var turn in turns)
            {
                switch (turn.Role)
                {
                    case "system":
                        text.Append(turn.Content).Append("\n\n");
                        break;
                    default:
                        // "Assistant:" then the generated text, which starts with its own space.
                        text.Append(Label(turn.Role)).Append(": ").Append(turn.Content.TrimStart(' ')).Append('\n');
                        break;
                }
            }
            if (addGenerationPrompt)
                text.Append("Assistant:");
            return text.ToString();
        }

        private static string Label(string role) => role.Length == 0 ? role : char.ToUpperInvariant(role[0]) + role[1..];
    }
}
