using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Horizon;

namespace Horizon.Cli;

/// <summary>The <c>horizon</c> command. Every failure on bad input ends in one line on stderr and exit code 1.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("Horizon: an inference runtime for long-context sequence models.");
        root.Subcommands.Add(ScoreCommand());
        root.Subcommands.Add(InspectCommand());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ChatCommand.Create());
        root.Subcommands.Add(DoctorCommand.Create());
        root.Subcommands.Add(Bench.BenchCommand.Create());
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (e is HorizonException or IOException or UnauthorizedAccessException or FormatException)
        {
            Console.Error.WriteLine($"error: {OneLine(e.Message)}");
            return 1;
        }
        catch (Exception e)
        {
            // A bug, not bad input; still one line, so hosts and scripts can report it.
            Console.Error.WriteLine($"internal error: {e.GetType().Name}: {OneLine(e.Message)}");
            return 2;
        }
    }

    private static Option<string> ModelOption() => new("--model", "-m")
    {
        Description = "Hugging Face model directory (config.json + safetensors)",
        Required = true,
    };

    private static Command ScoreCommand()
    {
        var model = ModelOption();
        var tokens = new Option<string?>("--tokens") { Description = "token ids separated by commas or white space" };
        var tokensFile = new Option<string?>("--tokens-file") { Description = "file of token ids separated by commas or white space" };
        var firstBlockPadding = new Option<int?>("--first-block-padding")
        {
            Description = "two-level (Block Transformer) models: pad tokens before the first block (default: block length - 1, so every token after the first is predicted)",
        };
        var device = GenerateSupport.DeviceOption("cpu");
        var command = new Command("score", "Per-token log-probabilities and perplexity of a token sequence, as one JSON object.")
        {
            model, tokens, tokensFile, firstBlockPadding, device,
        };
        command.SetAction(result =>
        {
            string? inline = result.GetValue(tokens);
            string? file = result.GetValue(tokensFile);
            if ((inline is null) == (file is null))
                throw new HorizonException("give exactly one of --tokens or --tokens-file");
            string text = inline ?? ReadTokensFile(file!);
            var ids = TokenIds.Parse(text, inline is null ? file! : "--tokens");

            using var loaded = ModelRegistry.Load(result.GetValue(model)!, GenerateSupport.ParseDevice(result.GetValue(device)!));
            int? padding = result.GetValue(firstBlockPadding);
            bool twoLevel;
            {
                var probe = loaded.CreateState(1);
                twoLevel = probe is IBlockModelState;
                (probe as IDisposable)?.Dispose();
            }
            if (padding is not null && !twoLevel)
                throw new HorizonException($"--first-block-padding applies to two-level models only; {loaded.Info.Architecture} has no blocks");
            var score = Scoring.Score(loaded, ids, firstBlockPadding: padding);
            WriteScore(score);
            return 0;
        });
        return command;
    }

    private static string ReadTokensFile(string path)
    {
        if (!File.Exists(path))
            throw new HorizonException($"{path}: tokens file not found");
        return File.ReadAllText(path);
    }

    private static void WriteScore(ScoreResult score)
    {
        var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("tokens");
            foreach (int id in score.Tokens)
                json.WriteNumberValue(id);
            json.WriteEndArray();
            json.WriteStartArray("logprobs");
            // A position the model does not predict (a two-level model's first block) is null, as in the golden fixtures.
            foreach (double lp in score.LogProbs)
            {
                if (double.IsNaN(lp))
                    json.WriteNullValue();
                else
                    json.WriteNumberValue(lp);
            }
            json.WriteEndArray();
            if (double.IsNaN(score.Perplexity))
                json.WriteNull("perplexity");
            else
                json.WriteNumber("perplexity", score.Perplexity);
            json.WriteEndObject();
        }
        Console.Out.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    private static Command InspectCommand()
    {
        var model = ModelOption();
        var command = new Command("inspect", "Architecture, sizes, parameter count and weight dtypes of a model directory.") { model };
        command.SetAction(result =>
        {
            using var loaded = ModelRegistry.Load(result.GetValue(model)!);
            var info = loaded.Info;
            var c = CultureInfo.InvariantCulture;
            Console.WriteLine($"architecture: {info.Architecture} (spec {info.SpecName})");
            foreach (var (name, value) in info.Sizes)
                Console.WriteLine($"  {name}: {value}");
            Console.WriteLine(string.Create(c, $"parameters: {info.ParameterCount:N0}"));
            foreach (var (dtype, count) in info.ParametersByDType.OrderBy(p => p.Key, StringComparer.Ordinal))
                Console.WriteLine(string.Create(c, $"  {dtype}: {count:N0}"));
            return 0;
        });
        return command;
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
