using System.CommandLine;
using System.Globalization;
using Horizon.Generation;
using Spectre.Console;

namespace Horizon.Cli;

/// <summary>Options and helpers shared by <c>generate</c> and <c>chat</c>.</summary>
internal static class GenerateSupport
{
    /// <summary>The model <c>generate</c> and <c>chat</c> use without <c>--model</c>.</summary>
    public const string DefaultModel = "models/horizon-kjv";

    public static Option<string?> ModelOption() => new("--model", "-m")
    {
        Description = $"Hugging Face model directory (config.json, safetensors, tokenizer); default {DefaultModel}",
    };

    public static Option<string> DeviceOption(string defaultDevice = "auto") => new Option<string>("--device")
    {
        Description = "where to run: cpu, cuda or auto (auto: CUDA when a device and the model's kernels are there, else the CPU)",
        DefaultValueFactory = _ => defaultDevice,
    }.AcceptOnlyFromAmong("cpu", "cuda", "auto");

    /// <summary>The value of <c>--device</c>.</summary>
    public static HorizonDevice ParseDevice(string device) => device switch
    {
        "cpu" => HorizonDevice.Cpu,
        "cuda" => HorizonDevice.Cuda,
        _ => HorizonDevice.Auto,
    };

    public static Option<bool> NoProgressOption() => new("--no-progress") { Description = "no progress display for loading and prefill" };

    /// <summary>The sampling options both commands take.</summary>
    public sealed class Sampling
    {
        public Option<int?> MaxTokens { get; } = new("--max-tokens", "-n") { Description = "most tokens to generate" };
        public Option<float?> Temperature { get; } = new("--temperature", "-t") { Description = "softmax temperature; 0 is greedy" };
        public Option<int?> TopK { get; } = new("--top-k") { Description = "keep the k most probable tokens (0: off)" };
        public Option<float?> TopP { get; } = new("--top-p") { Description = "nucleus sampling threshold in (0, 1]" };
        public Option<float?> MinP { get; } = new("--min-p") { Description = "keep tokens at least min-p × the top probability" };
        public Option<float?> RepetitionPenalty { get; } = new("--repetition-penalty") { Description = "penalty for tokens already in the context (1: off)" };
        public Option<ulong?> Seed { get; } = new("--seed", "-s") { Description = "sampler seed: the same seed gives the same text" };
        public Option<string[]> Stop { get; } = new("--stop") { Description = "a string that ends generation (repeatable)", AllowMultipleArgumentsPerToken = false };
        public Option<bool> Greedy { get; } = new("--greedy") { Description = "greedy decoding (same as --temperature 0)" };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { MaxTokens, Temperature, TopK, TopP, MinP, RepetitionPenalty, Seed, Stop, Greedy })
                command.Options.Add(option);
        }

        /// <summary>The model's generation_config.json defaults, overridden by what was given.</summary>
        public GenerationOptions Read(ParseResult result, GenerationConfig config, int defaultMaxTokens)
        {
            var options = config.ToOptions(new GenerationOptions { MaxTokens = defaultMaxTokens });
            if (result.GetValue(MaxTokens) is int max)
                options = options with { MaxTokens = max };
            if (result.GetValue(Temperature) is float t)
                options = options with { Temperature = t };
            if (result.GetValue(Greedy))
                options = options with { Temperature = 0 };
            if (result.GetValue(TopK) is int k)
                options = options with { TopK = k };
            if (result.GetValue(TopP) is float p)
                options = options with { TopP = p };
            if (result.GetValue(MinP) is float minP)
                options = options with { MinP = minP };
            if (result.GetValue(RepetitionPenalty) is float r)
                options = options with { RepetitionPenalty = r };
            if (result.GetValue(Seed) is ulong seed)
                options = options with { Seed = seed };
            if (result.GetValue(Stop) is { Length: > 0 } stops)
                options = options with { StopSequences = stops };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                string message = e is ArgumentOutOfRangeException range ? $"{range.ParamName}: {range.Message.Split('(')[0].Trim()}" : e.Message;
                throw new HorizonException($"bad sampling option: {message.ReplaceLineEndings(" ")}");
            }
            return options;
        }
    }

    /// <summary>
    /// The model directory: <c>--model</c>, else <see cref="DefaultModel"/> under the current directory or under a
    /// folder above the program (so <c>dotnet run --project src/Cli</c> finds it from the repository).
    /// </summary>
    public static string ResolveModel(string? given)
    {
        if (given is not null)
            return given;
        if (Directory.Exists(DefaultModel))
            return DefaultModel;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, DefaultModel);
            if (Directory.Exists(candidate))
                return candidate;
        }
        throw new HorizonException($"the default model {DefaultModel} was not found (run from the repository root, or pass --model DIR)");
    }

    /// <summary>A console on stderr for progress, so stdout carries only the generated text.</summary>
    public static IAnsiConsole? ProgressConsole(bool disabled)
    {
        if (disabled || Console.IsErrorRedirected)
            return null;
        return AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Console.Error),
            Ansi = AnsiSupport.Detect,
            Interactive = InteractionSupport.Yes,
        });
    }

    /// <summary>Loads the model, with a spinner when there is a console for it.</summary>
    public static HorizonModel Load(string directory, IAnsiConsole? console, HorizonDevice device)
    {
        if (console is null)
            return HorizonModel.Load(directory, null, device);
        return console.Status().Spinner(Spinner.Known.Dots).Start($"Loading {Markup.Escape(directory)}", context =>
            HorizonModel.Load(directory, new Reporter<string>(step => context.Status($"Loading {Markup.Escape(directory)}: {step}")), device));
    }

    /// <summary>
    /// The first step of a generation (prefill and first token), under a progress bar when the prompt needs more
    /// than one prefill chunk and there is a console for it.
    /// </summary>
    public static async Task<bool> FirstStepAsync(IAsyncEnumerator<GenerationUpdate> enumerator, ProgressRelay relay, int promptTokens, int chunk, IAnsiConsole? console)
    {
        if (console is null || promptTokens <= chunk)
            return await enumerator.MoveNextAsync();
        return await console.Progress().AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask("prefill", maxValue: promptTokens);
                relay.Target = p => task.Value = p.Done;
                bool has = await enumerator.MoveNextAsync();
                task.Value = promptTokens;
                relay.Target = null;
                return has;
            });
    }

    /// <summary>Where a loaded model runs, for the stats line: "cpu", or "cuda (device name)".</summary>
    public static string DeviceName(HorizonModel model) =>
        model.Model is Horizon.Cuda.CudaCausalLanguageModel cuda ? $"cuda ({cuda.Backend.Context.DeviceName})" : "cpu";

    /// <summary>One line of speeds: prefill and decode tokens per second.</summary>
    public static string Stats(GenerationUsage usage, FinishReason finish, string? device = null)
    {
        var c = CultureInfo.InvariantCulture;
        string cached = usage.CachedTokens > 0 ? string.Create(c, $" (+{usage.CachedTokens} cached)") : "";
        string where = device is null ? "" : $" | device: {device}";
        return string.Create(c,
            $"prefill: {usage.PromptTokens} tokens{cached} in {usage.PrefillTime.TotalSeconds:F2} s, {usage.PrefillTokensPerSecond:F1} tok/s | " +
            $"decode: {usage.GeneratedTokens} tokens in {usage.DecodeTime.TotalSeconds:F2} s, {usage.DecodeTokensPerSecond:F1} tok/s | " +
            $"finish: {FinishName(finish)} | seed: {usage.Seed}{where}");
    }

    public static string FinishName(FinishReason finish) => finish switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        FinishReason.ContextFull => "context full",
        _ => finish.ToString(),
    };

    /// <summary>An IProgress that calls its current target on the reporting thread (Progress&lt;T&gt; would post elsewhere).</summary>
    public sealed class ProgressRelay : IProgress<PrefillProgress>
    {
        public Action<PrefillProgress>? Target { get; set; }

        public void Report(PrefillProgress value) => Target?.Invoke(value);
    }

    private sealed class Reporter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
