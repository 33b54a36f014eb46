using System.CommandLine;
using System.Globalization;

namespace Horizon.Cli.Bench;

/// <summary>
/// <c>horizon bench</c>: programs that measure and print figures (never timed unit tests). Bad options end, like
/// every other command, in one line on stderr and exit code 1; progress goes to stderr, the tables to stdout.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks that measure and print figures.");
        bench.Subcommands.Add(ScalingCommand());
        bench.Subcommands.Add(CudaCommand());
        return bench;
    }

    private static Command CudaCommand()
    {
        var only = new Option<string>("--only")
        {
            Description = "parts to measure, comma-separated: prefill, decode, gla (default: all; the device copy is always measured)",
            DefaultValueFactory = _ => "all",
        };
        var repeats = new Option<int>("--repeats") { Description = "timed launches per case (the figure is their median)", DefaultValueFactory = _ => 20 };
        var warmup = new Option<int>("--warmup") { Description = "untimed launches before the timed ones, per case", DefaultValueFactory = _ => 3 };
        var output = new Option<string?>("--out") { Description = "also write the rows, tab-separated, to this file (input of bench/cuda/torch_anchor.py and join.py)" };
        var markdown = new Option<bool>("--markdown") { Description = "print the tables as Markdown" };
        var command = new Command("cuda", "Horizon's CUDA kernels on issue 4's matrix: causal attention prefill (TFLOP/s), decode (GB/s and share of the device copy measured in the same run), GLA chunked prefill against flash attention at the same width (tokens/s).")
        {
            only, repeats, warmup, output, markdown,
        };
        command.SetAction(result =>
        {
            var settings = new CudaBenchSettings(
                CudaBenchMatrix.ParseParts(result.GetValue(only)!),
                result.GetValue(warmup) is >= 0 and var w ? w : throw new HorizonException("--warmup must not be negative"),
                Positive(result.GetValue(repeats), "--repeats"),
                result.GetValue(markdown),
                result.GetValue(output) is { Length: > 0 } path ? path : null);
            return new CudaBenchmark(settings, Console.Out, Console.Error).Run();
        });
        return command;
    }

    private static Command ScalingCommand()
    {
        var lengths = new Option<string>("--lengths")
        {
            Description = "context lengths, comma-separated (a K suffix multiplies by 1024)",
            DefaultValueFactory = _ => "1024,2048,4096,8192,16384,32768",
        };
        var mixers = new Option<string>("--mixers")
        {
            Description = $"token mixers, comma-separated ({string.Join(", ", SyntheticModel.MixerNames)})",
            DefaultValueFactory = _ => string.Join(",", SyntheticModel.MixerNames),
        };
        var width = new Option<int>("--width") { Description = "model width D (a multiple of 2·heads)", DefaultValueFactory = _ => 256 };
        var layers = new Option<int>("--layers") { Description = "blocks per model", DefaultValueFactory = _ => 2 };
        var heads = new Option<int>("--heads") { Description = "heads of attention, sliding-window attention and GLA", DefaultValueFactory = _ => 4 };
        var window = new Option<int>("--window") { Description = "window of sliding_window_attention", DefaultValueFactory = _ => 512 };
        var chunk = new Option<int>("--chunk") { Description = "tokens per prefill call; 0: the whole context in one call", DefaultValueFactory = _ => 1024 };
        var repeats = new Option<int?>("--repeats") { Description = "timed runs per length (default: adaptive, at least 3, 2 for runs over 10 s)" };
        var target = new Option<double>("--target-seconds") { Description = "adaptive repeats aim at about this much timed work per length", DefaultValueFactory = _ => 3.0 };
        var idleWait = new Option<double>("--idle-wait")
        {
            Description = "before each timed run wait up to this many seconds for other processes to use under 10 % of the processors (Linux); runs they took more than 10 % of are retried; 0: off",
            DefaultValueFactory = _ => 60.0,
        };
        var markdown = new Option<bool>("--markdown") { Description = "print the tables as Markdown" };

        var command = new Command("scaling", "CPU prefill time and memory against context length for softmax attention, sliding-window attention, GLA and Hyena in models of equal width.")
        {
            lengths, mixers, width, layers, heads, window, chunk, repeats, target, idleWait, markdown,
        };
        command.SetAction(result =>
        {
            int[] parsedLengths = ParseLengths(result.GetValue(lengths)!);
            var settings = new ScalingSettings(
                parsedLengths,
                ParseMixers(result.GetValue(mixers)!),
                Positive(result.GetValue(width), "--width"),
                Positive(result.GetValue(layers), "--layers"),
                Positive(result.GetValue(heads), "--heads"),
                Positive(result.GetValue(window), "--window"),
                result.GetValue(chunk) switch
                {
                    0 => parsedLengths[^1],
                    < 0 and var c => throw new HorizonException($"--chunk {c}: must be positive, or 0 for the whole context in one call"),
                    var c => c,
                },
                result.GetValue(repeats) is int r ? Positive(r, "--repeats") : null,
                result.GetValue(target) is > 0 and var t ? t : throw new HorizonException("--target-seconds must be positive"),
                result.GetValue(idleWait) is >= 0 and var w ? w : throw new HorizonException("--idle-wait must not be negative"),
                result.GetValue(markdown));
            if (settings.Width % (2 * settings.Heads) != 0)
                throw new HorizonException($"--width {settings.Width}: must be a multiple of 2 × heads = {2 * settings.Heads} (GLA's d_k = width / (2 · heads); RoPE needs an even head_dim)");
            if (settings.Width / settings.Heads % 2 != 0)
                throw new HorizonException($"--width {settings.Width} / --heads {settings.Heads}: head_dim must be even for RoPE");
            return new ScalingBenchmark(settings, Console.Out, Console.Error).Run();
        });
        return command;
    }

    /// <summary>"1024,2K,4096" → [1024, 2048, 4096], sorted; refuses non-positive, duplicate and malformed entries.</summary>
    internal static int[] ParseLengths(string text)
    {
        var values = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            bool kilo = part.EndsWith('K') || part.EndsWith('k');
            string digits = kilo ? part[..^1] : part;
            if (!int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int value) || value <= 0 || (kilo && value > int.MaxValue / 1024))
                throw new HorizonException($"--lengths: '{part}' is not a positive token count");
            values.Add(kilo ? value * 1024 : value);
        }
        if (values.Count == 0)
            throw new HorizonException("--lengths: give at least one length");
        if (values.Distinct().Count() != values.Count)
            throw new HorizonException($"--lengths: '{text}' lists a length twice");
        return [.. values.Order()];
    }

    /// <summary>Mixer names, checked against <see cref="SyntheticModel.MixerNames"/> and put in its order.</summary>
    internal static string[] ParseMixers(string text)
    {
        var names = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (names.Length == 0)
            throw new HorizonException("--mixers: give at least one mixer");
        foreach (string name in names)
        {
            if (!SyntheticModel.MixerNames.Contains(name))
                throw new HorizonException($"--mixers: unknown mixer '{name}' (known: {string.Join(", ", SyntheticModel.MixerNames)})");
        }
        return [.. SyntheticModel.MixerNames.Where(names.Contains)];
    }

    private static int Positive(int value, string option) =>
        value > 0 ? value : throw new HorizonException($"{option} {value}: must be positive");
}
