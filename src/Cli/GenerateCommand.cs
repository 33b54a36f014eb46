using System.CommandLine;

namespace Horizon.Cli;

/// <summary>
/// <c>horizon generate "And God said"</c>: streams the continuation of a prompt to stdout, then one line of
/// prefill and decode speeds on stderr.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var prompt = new Argument<string>("prompt") { Description = "the text to continue" };
        var model = GenerateSupport.ModelOption();
        var device = GenerateSupport.DeviceOption();
        var noProgress = GenerateSupport.NoProgressOption();
        var noEcho = new Option<bool>("--no-echo") { Description = "print only the generated text, not the prompt before it" };
        var context = new Option<int?>("--context") { Description = "context capacity in tokens (default: the model's, at most 8192)" };
        var chunk = new Option<int>("--prefill-chunk") { Description = "tokens per prefill chunk", DefaultValueFactory = _ => InferenceSession.DefaultPrefillChunkSize };
        var sampling = new GenerateSupport.Sampling();
        var command = new Command("generate", "Generate text after a prompt, streaming it, then print prefill and decode tokens/s.")
        {
            prompt, model, device, context, chunk, noEcho, noProgress,
        };
        sampling.AddTo(command);
        command.SetAction(async (result, cancellationToken) =>
        {
            int chunkSize = result.GetValue(chunk);
            if (chunkSize <= 0)
                throw new HorizonException("--prefill-chunk must be > 0");
            if (result.GetValue(context) is <= 0)
                throw new HorizonException("--context must be > 0");
            string directory = GenerateSupport.ResolveModel(result.GetValue(model));
            var console = GenerateSupport.ProgressConsole(result.GetValue(noProgress));

            using var loaded = GenerateSupport.Load(directory, console, GenerateSupport.ParseDevice(result.GetValue(device)!));
            var options = sampling.Read(result, loaded.GenerationConfig, defaultMaxTokens: 200);
            string text = result.GetValue(prompt)!;
            var ids = loaded.Tokenizer.Encode(text, addSpecialTokens: true);
            if (ids.Count == 0)
                throw new HorizonException("the prompt is empty");
            using var session = loaded.CreateSession(result.GetValue(context), chunkSize);

            if (!result.GetValue(noEcho))
                Console.Out.Write(text);
            var relay = new GenerateSupport.ProgressRelay();
            await using var updates = session.GenerateAsync(ids, options, relay, cancellationToken).GetAsyncEnumerator(cancellationToken);
            bool has = await GenerateSupport.FirstStepAsync(updates, relay, ids.Count, chunkSize, console);
            while (has)
            {
                var update = updates.Current;
                Console.Out.Write(update.Text);
                Console.Out.Flush();
                if (update.IsFinal)
                {
                    Console.Out.WriteLine();
                    Console.Error.WriteLine(GenerateSupport.Stats(update.Usage!, update.FinishReason!.Value, GenerateSupport.DeviceName(loaded)));
                    break;
                }
                has = await updates.MoveNextAsync();
            }
            return 0;
        });
        return command;
    }
}
