using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Horizon.Generation;
using Horizon.Tokenization;

namespace Horizon;

/// <summary>Prefill progress: <paramref name="Done"/> of <paramref name="Total"/> tokens run.</summary>
public readonly record struct PrefillProgress(int Done, int Total);

/// <summary>
/// A conversation with a model: its state (every layer's cache), the tokens in it, and generation on top.
/// Tokens are appended and run in chunks of <see cref="PrefillChunkSize"/> (chunked prefill: logits memory is
/// chunk × vocab floats however long the prompt; the result equals one-shot prefill). Each
/// <see cref="GenerateAsync(string, GenerationOptions?, IProgress{PrefillProgress}?, CancellationToken)"/> continues
/// the same context, so a follow-up only prefills its new tokens.
/// <para>
/// The last token generated is kept but not run until the next call needs it (it may be a stop token the next
/// turn follows): <see cref="Tokens"/> holds every token, <see cref="CachedLength"/> those in the state.
/// </para>
/// <para>
/// When the session has a tokenizer, ids beyond its vocabulary (padding rows some checkpoints add to the
/// embedding) are never sampled.
/// </para>
/// <para>
/// Context policy: a prompt that does not fit in the room left throws <see cref="ContextFullException"/> before
/// anything runs; generation that reaches the capacity stops with <see cref="FinishReason.ContextFull"/> and keeps
/// what it made. Call <see cref="Reset"/> to start over. One generation runs at a time per session.
/// </para>
/// </summary>
public sealed class InferenceSession : IDisposable
{
    /// <summary>Tokens per prefill chunk unless told otherwise.</summary>
    public const int DefaultPrefillChunkSize = 128;

    private readonly List<int> _tokens = [];
    private IModelState? _state;
    private float[]? _chunkLogits;
    private float[] _lastLogits;
    private float[] _stepLogits;
    private int _busy;

    public InferenceSession(ICausalLanguageModel model, HorizonTokenizer? tokenizer = null, int capacity = 4096,
        int prefillChunkSize = DefaultPrefillChunkSize, GenerationConfig? generationConfig = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(prefillChunkSize);
        if (tokenizer is not null && tokenizer.VocabSize > model.VocabSize)
            throw new HorizonException($"the tokenizer has {tokenizer.VocabSize} ids but the model only {model.VocabSize}");
        Model = model;
        Tokenizer = tokenizer;
        PrefillChunkSize = prefillChunkSize;
        GenerationConfig = generationConfig ?? GenerationConfig.Empty;
        _state = model.CreateState(capacity);
        _lastLogits = new float[model.VocabSize];
        _stepLogits = new float[model.VocabSize];
    }

    /// <summary>A copy of <paramref name="source"/>: same model, tokenizer and config; a deep copy of the state and tokens.</summary>
    private InferenceSession(InferenceSession source, IModelState state)
    {
        Model = source.Model;
        Tokenizer = source.Tokenizer;
        PrefillChunkSize = source.PrefillChunkSize;
        GenerationConfig = source.GenerationConfig;
        _state = state;
        _tokens.AddRange(source._tokens);
        _lastLogits = (float[])source._lastLogits.Clone();
        _stepLogits = new float[source._stepLogits.Length];
    }

    public ICausalLanguageModel Model { get; }

    /// <summary>The tokenizer for text prompts and streamed text; null for a token-only session.</summary>
    public HorizonTokenizer? Tokenizer { get; }

    /// <summary>Stop ids and sampling defaults used when a call passes no options.</summary>
    public GenerationConfig GenerationConfig { get; }

    public int PrefillChunkSize { get; }

    /// <summary>Most tokens the session can hold.</summary>
    public int Capacity => State.Capacity;

    /// <summary>The model state (every layer's cache).</summary>
    public IModelState State => _state ?? throw new ObjectDisposedException(nameof(InferenceSession));

    /// <summary>Every token of the session, in the state or waiting to be run.</summary>
    public IReadOnlyList<int> Tokens => _tokens.AsReadOnly();

    /// <summary>How many of <see cref="Tokens"/> the state holds.</summary>
    public int CachedLength => State.Length;

    /// <summary>Room left for new tokens.</summary>
    public int RoomLeft => Capacity - _tokens.Count;

    /// <summary>
    /// The logits that follow the last token, after <see cref="Prefill"/>; throws while tokens wait to be run or
    /// when the session is empty.
    /// </summary>
    public ReadOnlySpan<float> NextTokenLogits
    {
        get
        {
            if (_tokens.Count == 0 || State.Length != _tokens.Count)
                throw new InvalidOperationException("no logits: the session is empty or has tokens waiting to be run (call Prefill)");
            return _lastLogits;
        }
    }

    /// <summary>Adds tokens to the session without running them (the next prefill or generation runs them).</summary>
    /// <exception cref="ContextFullException">They do not fit in the room left.</exception>
    public void Append(IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        using var _ = Enter();
        AppendChecked(tokens);
    }

    /// <summary>Encodes <paramref name="text"/> as it is (special tokens written in it are parsed, none are added) and appends it.</summary>
    public void Append(string text) => Append(RequireTokenizer().Encode(text));

    /// <summary>Runs every waiting token through the model, <see cref="PrefillChunkSize"/> at a time.</summary>
    public void Prefill(IProgress<PrefillProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        using var _ = Enter();
        RunPending(progress, cancellationToken);
    }

    /// <summary>
    /// Encodes <paramref name="prompt"/> (special tokens written in it are parsed; on an empty session the
    /// tokenizer's own special tokens, such as BOS, are added as Hugging Face does) and generates after it, streaming.
    /// </summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(string prompt, GenerationOptions? options = null,
        IProgress<PrefillProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        var tokens = prompt.Length == 0 ? [] : RequireTokenizer().Encode(prompt, addSpecialTokens: _tokens.Count == 0);
        return GenerateAsync(tokens, options, progress, cancellationToken);
    }

    /// <summary>
    /// Appends <paramref name="prompt"/> (may be empty to continue), prefills, and generates: one update per token
    /// with the text it completes, then a final update with the rest of the text, the finish reason and usage.
    /// Without <paramref name="options"/>, the model's generation_config.json defaults apply.
    /// </summary>
    public IAsyncEnumerable<GenerationUpdate> GenerateAsync(IReadOnlyList<int> prompt, GenerationOptions? options = null,
        IProgress<PrefillProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= GenerationConfig.ToOptions();
        options.Validate();
        return Generate(prompt, options, progress, cancellationToken);
    }

    /// <summary>Generates and collects the whole result.</summary>
    public async Task<GenerationResult> GenerateTextAsync(string prompt, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        var text = new System.Text.StringBuilder();
        var tokens = new List<int>();
        await foreach (var update in GenerateAsync(prompt, options, null, cancellationToken).ConfigureAwait(false))
        {
            text.Append(update.Text);
            if (update.IsFinal)
                return new GenerationResult(text.ToString(), tokens, update.FinishReason!.Value, update.Usage!);
            tokens.Add(update.TokenId);
        }
        throw new InvalidOperationException("generation ended without a final update");
    }

    private async IAsyncEnumerable<GenerationUpdate> Generate(IReadOnlyList<int> prompt, GenerationOptions options,
        IProgress<PrefillProgress>? progress, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var busy = Enter();
        int cached = State.Length;
        AppendChecked(prompt);
        if (_tokens.Count == 0)
            throw new HorizonException("nothing to generate from: the prompt and the session are empty");
        int promptLength = _tokens.Count;
        int toPrefill = _tokens.Count - cached;

        ulong seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
        var sampler = new Sampler(options, seed);
        // On a device-sampling model the last prompt token is left for the first ForwardAndSample step.
        var deviceModel = SampleOnDevice && sampler.DeviceCompatible && Model is IDeviceSamplingModel candidate
            && Model.VocabSize <= candidate.MaxSamplingVocab && (Tokenizer is null || Tokenizer.VocabSize >= Model.VocabSize)
            ? candidate : null;

        var clock = Stopwatch.StartNew();
        await Task.Run(() => RunPending(progress, cancellationToken, leaveLast: deviceModel is not null), cancellationToken).ConfigureAwait(false);
        var prefillTime = clock.Elapsed;
        clock.Restart();

        var stopIds = new HashSet<int>(options.StopTokenIds ?? GenerationConfig.EosTokenIds);
        stopIds.UnionWith(options.ExtraStopTokenIds);
        var decoder = Tokenizer?.CreateDecoder(options.SkipSpecialTokens);
        var matcher = new StopSequenceMatcher(options.StopSequences);
        int generated = 0;
        FinishReason? finish = options.MaxTokens == 0 ? FinishReason.Length : null;
        while (finish is null)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (State.Length < _tokens.Count && _tokens.Count > Capacity)
            {
                finish = FinishReason.ContextFull;
                break;
            }
            int id;
            if (deviceModel is not null && State.Length < _tokens.Count)
            {
                // Run the waiting token(s) and draw the next id where the logits are.
                var (temperature, topP) = sampler.DeviceParameters;
                double uniform = sampler.NextUniform();
                id = await Task.Run(() => deviceModel.ForwardAndSample(CollectionsMarshal.AsSpan(_tokens)[State.Length..], State, temperature, topP, uniform),
                    cancellationToken).ConfigureAwait(false);
            }
            else
            {
                if (State.Length < _tokens.Count)
                    await Task.Run(() => RunPending(null, cancellationToken), cancellationToken).ConfigureAwait(false);
                _lastLogits.CopyTo(_stepLogits, 0);
                // Ids the tokenizer does not have (padding rows of the embedding) are never picked.
                if (Tokenizer is not null && Tokenizer.VocabSize < _stepLogits.Length)
                    _stepLogits.AsSpan(Tokenizer.VocabSize).Fill(float.NegativeInfinity);
                id = sampler.Sample(_stepLogits, CollectionsMarshal.AsSpan(_tokens), promptLength);
            }
            _tokens.Add(id);
            generated++;
            if (stopIds.Contains(id))
            {
                finish = FinishReason.Stop;
                break;
            }
            string text = matcher.Append(decoder?.Append(id) ?? "");
            if (matcher.Stopped)
                finish = FinishReason.Stop;
            else if (generated >= options.MaxTokens)
                finish = FinishReason.Length;
            yield return new GenerationUpdate(id, text);
        }
        string rest = matcher.Stopped ? "" : matcher.Append(decoder?.Flush() ?? "") + matcher.Flush();
        var usage = new GenerationUsage(toPrefill, cached, generated, prefillTime, clock.Elapsed, seed);
        yield return new GenerationUpdate(-1, rest) { FinishReason = finish, Usage = usage };
    }

    /// <summary>
    /// A new session that starts where this one is: the same tokens, and a copy of every layer's cache and state
    /// (fork/snapshot). A long prefix is prefilled once, then each fork continues it on its own; continuing a
    /// fork gives what recomputing its whole token sequence from scratch would. Attention caches are copied
    /// copy-on-write (their full pages are shared, only the partial last page of each is copied), so a fork of a long
    /// prefix costs about one page per attention layer plus the fixed-size recurrent states; the residual hook is
    /// not carried over.
    /// </summary>
    /// <exception cref="NotSupportedException">The model's state cannot be copied (a model generated without fork support).</exception>
    public InferenceSession Fork()
    {
        using var _ = Enter();
        if (State is not IForkableModelState forkable)
            throw new NotSupportedException($"the state of {Model.GetType().Name} cannot be copied (its model class was generated without fork support)");
        return new InferenceSession(this, forkable.Clone());
    }

    /// <summary>
    /// The residual-stream hook run after every layer of every Forward of this session (steering, reading
    /// activations); null for none. See <see cref="IResidualHook"/>.
    /// </summary>
    /// <exception cref="NotSupportedException">The model's state has no hook points.</exception>
    public IResidualHook? ResidualHook
    {
        get => (State as ISteerableModelState)?.ResidualHook;
        set
        {
            if (State is not ISteerableModelState steerable)
                throw new NotSupportedException($"the state of {Model.GetType().Name} has no residual-stream hook points (its model class was generated without them)");
            steerable.ResidualHook = value;
        }
    }

    /// <summary>
    /// Whether generation lets a model that samples on its own device (<see cref="IDeviceSamplingModel"/>, the CUDA
    /// backend) pick the tokens there when the options allow it (temperature and top-p only): one id per step comes
    /// back instead of a row of logits, and a seed gives the same choices as the host sampler on the same logits.
    /// True by default; false samples on the host always.
    /// </summary>
    public bool SampleOnDevice { get; set; } = true;

    /// <summary>Forgets every token.</summary>
    public void Reset()
    {
        using var _ = Enter();
        State.Reset();
        _tokens.Clear();
    }

    /// <summary>Frees the state (caches) and buffers; the model stays (it is not the session's).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _busy, 1) == 1 && _state is not null)
            throw new InvalidOperationException("the session is generating; cancel it before disposing");
        // Reset first: it hands the KV cache pages back (to the page pool, or to the forks still sharing them).
        _state?.Reset();
        (_state as IDisposable)?.Dispose();
        _state = null;
        _chunkLogits = null;
        _lastLogits = [];
        _stepLogits = [];
        _tokens.Clear();
        _tokens.TrimExcess();
    }

    private HorizonTokenizer RequireTokenizer() =>
        Tokenizer ?? throw new InvalidOperationException("this session has no tokenizer: pass token ids");

    private void AppendChecked(IReadOnlyList<int> tokens)
    {
        int vocab = Model.VocabSize;
        for (int i = 0; i < tokens.Count; i++)
        {
            if ((uint)tokens[i] >= (uint)vocab)
                throw new HorizonException($"token id {tokens[i]} at position {i} is out of range [0, {vocab})");
        }
        if (_tokens.Count + tokens.Count > Capacity)
            throw new ContextFullException($"the session holds {_tokens.Count} of at most {Capacity} tokens; a prompt of {tokens.Count} more does not fit (start a session with a larger capacity, or Reset)");
        _tokens.AddRange(tokens);
    }

    /// <summary>
    /// Runs the tokens not yet in the state, chunk by chunk; keeps the logits after the last one. With
    /// <paramref name="leaveLast"/>, the last waiting token is left for a device-sampling step (no logits are kept).
    /// A model with <see cref="ILastLogitsModel"/> computes only the last row's logits of each chunk.
    /// </summary>
    private void RunPending(IProgress<PrefillProgress>? progress, CancellationToken cancellationToken, bool leaveLast = false)
    {
        var state = State;
        int pending = _tokens.Count - state.Length - (leaveLast ? 1 : 0);
        if (pending <= 0)
            return;
        if (_tokens.Count > Capacity)
            throw new ContextFullException($"the session holds {_tokens.Count} tokens, more than its capacity {Capacity}");
        int vocab = Model.VocabSize;
        int chunk = Math.Min(PrefillChunkSize, pending);
        var lastOnly = Model as ILastLogitsModel;
        if (lastOnly is null && (_chunkLogits is null || _chunkLogits.Length < chunk * vocab))
            _chunkLogits = new float[checked(chunk * vocab)];
        int done = 0;
        int last = 0;
        while (done < pending)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int count = Math.Min(chunk, pending - done);
            var ids = CollectionsMarshal.AsSpan(_tokens).Slice(state.Length, count);
            if (lastOnly is not null)
                lastOnly.ForwardLast(ids, state, _lastLogits);
            else
                Model.Forward(ids, state, _chunkLogits.AsSpan(0, count * vocab));
            done += count;
            last = count;
            progress?.Report(new PrefillProgress(done, pending));
        }
        if (lastOnly is null)
            _chunkLogits.AsSpan((last - 1) * vocab, vocab).CopyTo(_lastLogits);
    }

    private Releaser Enter()
    {
        if (_state is null)
            throw new ObjectDisposedException(nameof(InferenceSession));
        if (Interlocked.Exchange(ref _busy, 1) == 1)
            throw new InvalidOperationException("the session is already generating; one call at a time");
        return new Releaser(this);
    }

    private readonly struct Releaser(InferenceSession session) : IDisposable
    {
        public void Dispose() => Volatile.Write(ref session._busy, 0);
    }
}
