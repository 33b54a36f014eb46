using Horizon.Chat;
using Horizon.Generation;
using Horizon.Tokenization;

namespace Horizon;

/// <summary>
/// A Hugging Face model directory loaded for generation: the model (by config.json's architecture), its
/// tokenizer (tokenizer.json or tokenizer.model, tokenizer_config.json) and its generation defaults
/// (generation_config.json). Disposing it releases the model's memory-mapped weights.
/// <code>
/// using var model = HorizonModel.Load("models/horizon-kjv");
/// using var session = model.CreateSession();
/// await foreach (var update in session.GenerateAsync("And God said"))
///     Console.Write(update.Text);
/// </code>
/// </summary>
public sealed class HorizonModel : IDisposable
{
    /// <summary>The largest context a session gets unless asked for more (its caches are allocated up front).</summary>
    public const int DefaultMaxCapacity = 8192;

    private ChatFormat? _chatFormat;

    private HorizonModel(string directory, ICausalLanguageModel model, HorizonTokenizer tokenizer, GenerationConfig generation, int contextLength)
    {
        Directory = directory;
        Model = model;
        Tokenizer = tokenizer;
        GenerationConfig = generation;
        ContextLength = contextLength;
    }

    public string Directory { get; }
    public ICausalLanguageModel Model { get; }

    /// <summary>Where the model runs: <see cref="HorizonDevice.Cuda"/> or <see cref="HorizonDevice.Cpu"/>.</summary>
    public HorizonDevice Device => Model is Cuda.CudaCausalLanguageModel ? HorizonDevice.Cuda : HorizonDevice.Cpu;
    public HorizonTokenizer Tokenizer { get; }
    public GenerationConfig GenerationConfig { get; }

    /// <summary>The model's context length: config.json's <c>max_position_embeddings</c>, else tokenizer_config.json's <c>model_max_length</c>, else 2048.</summary>
    public int ContextLength { get; }

    /// <summary>The chat format of the tokenizer's chat template (see <see cref="Chat.ChatFormat.FromTemplate"/>).</summary>
    /// <exception cref="HorizonException">The template is of a family Horizon cannot format.</exception>
    public ChatFormat ChatFormat => _chatFormat ??= ChatFormat.FromTemplate(Tokenizer.Config.ChatTemplate, Tokenizer);

    /// <summary>Loads model, tokenizer and generation config from <paramref name="directory"/>.</summary>
    /// <param name="directory">The model directory.</param>
    /// <param name="progress">Told each step (model, tokenizer) as it starts.</param>
    /// <param name="device">Where the model runs (<see cref="ModelRegistry.Load(string, HorizonDevice)"/>).</param>
    public static HorizonModel Load(string directory, IProgress<string>? progress = null, HorizonDevice device = HorizonDevice.Cpu)
    {
        ArgumentNullException.ThrowIfNull(directory);
        progress?.Report(device == HorizonDevice.Cpu ? "model" : "model (uploading to the device)");
        var model = ModelRegistry.Load(directory, device);
        try
        {
            progress?.Report("tokenizer");
            var tokenizer = HorizonTokenizer.Load(directory);
            if (tokenizer.VocabSize > model.VocabSize)
                throw new HorizonException($"{directory}: the tokenizer has {tokenizer.VocabSize} ids but the model only {model.VocabSize}");
            var generation = GenerationConfig.Load(directory, tokenizer);
            var config = ModelConfig.Load(Path.Combine(directory, "config.json"));
            int context = config.TryGetInt("max_position_embeddings") ?? tokenizer.Config.ModelMaxLength ?? 2048;
            return new HorizonModel(directory, model, tokenizer, generation, Math.Max(1, context));
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A new session. <paramref name="capacity"/> defaults to <see cref="ContextLength"/> capped at
    /// <see cref="DefaultMaxCapacity"/>; a larger one may be asked for.
    /// </summary>
    public InferenceSession CreateSession(int? capacity = null, int prefillChunkSize = InferenceSession.DefaultPrefillChunkSize) =>
        new(Model, Tokenizer, capacity ?? Math.Min(ContextLength, DefaultMaxCapacity), prefillChunkSize, GenerationConfig);

    /// <summary>An <see cref="Microsoft.Extensions.AI.IChatClient"/> over this model (which it does not dispose).</summary>
    public HorizonChatClient AsChatClient(HorizonChatClientOptions? options = null) => new(this, options);

    /// <summary>Generates from <paramref name="prompt"/> in a new session and returns the whole text.</summary>
    public async Task<GenerationResult> GenerateAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var session = CreateSession();
        return await session.GenerateTextAsync(prompt, options, cancellationToken).ConfigureAwait(false);
    }

    public void Dispose() => Model.Dispose();
}
