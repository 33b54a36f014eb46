using System.CommandLine;
using Horizon.Chat;
using Horizon.Generation;
using Microsoft.Extensions.AI;

namespace Horizon.Cli;

/// <summary>
/// <c>horizon chat</c>: an interactive conversation on stdin/stdout through the model's IChatClient. The
/// conversation's session is kept between turns, so each turn only prefills its own text. Commands:
/// <c>/reset</c> starts over, <c>/exit</c> (or end of input) quits.
/// </summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var model = GenerateSupport.ModelOption();
        var device = GenerateSupport.DeviceOption();
        var noProgress = GenerateSupport.NoProgressOption();
        var system = new Option<string?>("--system") { Description = "a system message to start the conversation with" };
        var context = new Option<int?>("--context") { Description = "context capacity in tokens (default: the model's, at most 8192)" };
        var stats = new Option<bool>("--stats") { Description = "after each reply, print prefill and decode tokens/s on stderr" };
        var sampling = new GenerateSupport.Sampling();
        var command = new Command("chat", "Chat with a model interactively (with history); /reset starts over, /exit quits.")
        {
            model, device, system, context, stats, noProgress,
        };
        sampling.AddTo(command);
        command.SetAction(async (result, cancellationToken) =>
        {
            if (result.GetValue(context) is <= 0)
                throw new HorizonException("--context must be > 0");
            string directory = GenerateSupport.ResolveModel(result.GetValue(model));
            var console = GenerateSupport.ProgressConsole(result.GetValue(noProgress));
            using var loaded = GenerateSupport.Load(directory, console, GenerateSupport.ParseDevice(result.GetValue(device)!));
            var defaults = sampling.Read(result, loaded.GenerationConfig, defaultMaxTokens: 256);
            using var client = loaded.AsChatClient(new HorizonChatClientOptions { Capacity = result.GetValue(context), DefaultOptions = defaults, MaxSessions = 1 });
            bool interactive = !Console.IsInputRedirected;
            if (interactive)
                Console.Error.WriteLine($"Chatting with {client.ModelId} ({client.Format.Name} format). /reset starts over, /exit quits.");

            string? conversation = null;
            string? systemText = result.GetValue(system);
            while (true)
            {
                if (interactive)
                    Console.Out.Write("> ");
                string? line = await Console.In.ReadLineAsync(cancellationToken);
                if (line is null || line.Trim() is "/exit" or "/quit")
                    break;
                if (line.Trim() == "/reset")
                {
                    conversation = null;
                    if (interactive)
                        Console.Error.WriteLine("(new conversation)");
                    continue;
                }
                if (line.Trim().Length == 0)
                    continue;

                var messages = new List<ChatMessage>();
                if (conversation is null && !string.IsNullOrWhiteSpace(systemText))
                    messages.Add(new ChatMessage(ChatRole.System, systemText));
                messages.Add(new ChatMessage(ChatRole.User, line));
                var options = new ChatOptions { ConversationId = conversation };
                GenerationUpdate? final = null;
                await foreach (var update in client.GetStreamingResponseAsync(messages, options, cancellationToken))
                {
                    conversation = update.ConversationId ?? conversation;
                    Console.Out.Write(update.Text);
                    Console.Out.Flush();
                    if (update.RawRepresentation is GenerationUpdate { IsFinal: true } last)
                        final = last;
                }
                Console.Out.WriteLine();
                if (result.GetValue(stats) && final is not null)
                    Console.Error.WriteLine(GenerateSupport.Stats(final.Usage!, final.FinishReason!.Value, GenerateSupport.DeviceName(loaded)));
            }
            return 0;
        });
        return command;
    }
}
