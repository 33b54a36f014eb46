using Horizon.Generation;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// How <see cref="InferenceSession"/> drives a model that samples on its own device (<see cref="IDeviceSamplingModel"/>,
/// the CUDA backend): prefill asks only for the last row's logits, each step one id comes back, a seed gives the host
/// sampler's choices, and options the device cannot follow (top-k, penalties, processors) fall back to the host.
/// The model here is the CPU test model behind a stand-in that makes the device's choice by the documented rule.
/// </summary>
public class DeviceSamplingSessionTests
{
    /// <summary>The CPU model, plus a "device" that draws from the last row as CudaOps.SampleTopP does.</summary>
    private sealed class StandInDevice(ICausalLanguageModel inner) : IDeviceSamplingModel
    {
        public int SampleCalls, LastCalls, FullCalls;

        public ModelInfo Info => inner.Info;
        public int VocabSize => inner.VocabSize;
        public int MaxSamplingVocab => 1 << 19;
        public IModelState CreateState(int capacity) => inner.CreateState(capacity);

        public void Forward(ReadOnlySpan<int> tokens, IModelState state, Span<float> logits)
        {
            FullCalls++;
            inner.Forward(tokens, state, logits);
        }

        public void ForwardLast(ReadOnlySpan<int> tokens, IModelState state, Span<float> lastLogits)
        {
            LastCalls++;
            var all = new float[tokens.Length * VocabSize];
            inner.Forward(tokens, state, all);
            all.AsSpan((tokens.Length - 1) * VocabSize, VocabSize).CopyTo(lastLogits);
        }

        public int ForwardAndSample(ReadOnlySpan<int> tokens, IModelState state, float temperature, float topP, double uniform)
        {
            SampleCalls++;
            var last = new float[VocabSize];
            ForwardLast(tokens, state, last);
            LastCalls--;
            if (temperature <= 0)
                return Sampler.ArgMax(last);
            var probabilities = new float[VocabSize];
            new Sampler(new GenerationOptions { Temperature = temperature, TopP = topP }, 0).Distribution(last, probabilities);
            double running = 0;
            int chosen = -1;
            for (int i = 0; i < probabilities.Length; i++)
            {
                if (probabilities[i] <= 0)
                    continue;
                chosen = i;
                running += probabilities[i];
                if (running > uniform)
                    return i;
            }
            return chosen;
        }

        public void Dispose() => inner.Dispose();
    }

    private static readonly int[] Prompt = [5, 17, 42, 8, 99, 3, 250, 7, 61];

    private static async Task<List<int>> Generate(StandInDevice model, GenerationOptions options, bool onDevice)
    {
        using var session = new InferenceSession(model, capacity: 64, prefillChunkSize: 4) { SampleOnDevice = onDevice };
        var ids = new List<int>();
        await foreach (var update in session.GenerateAsync(Prompt, options))
        {
            if (!update.IsFinal)
                ids.Add(update.TokenId);
        }
        return ids;
    }

    [TestCase(0f, 1f)]
    [TestCase(0.8f, 0.9f)]
    [TestCase(1.3f, 1f)]
    public async Task A_seed_gives_the_same_tokens_sampled_on_the_device_or_on_the_host(float temperature, float topP)
    {
        using var model = new StandInDevice(ModelRegistry.Load(GenerationTestModel.Directory));
        var options = new GenerationOptions { Temperature = temperature, TopP = topP, MaxTokens = 12, Seed = 11, StopTokenIds = [] };
        var onDevice = await Generate(model, options, onDevice: true);
        int sampleCalls = model.SampleCalls, lastCalls = model.LastCalls;
        model.SampleCalls = model.LastCalls = model.FullCalls = 0;
        var onHost = await Generate(model, options, onDevice: false);

        Assert.That(onDevice, Is.EqualTo(onHost));
        Assert.That(onDevice, Has.Count.EqualTo(12));
        // Device: the prompt but its last token in chunks of 4 with the last row's logits only (8 tokens: 2 calls),
        // then one ForwardAndSample per generated token; the host path never asks for every row's logits either.
        Assert.That(sampleCalls, Is.EqualTo(12));
        Assert.That(lastCalls, Is.EqualTo(2));
        Assert.That(model.SampleCalls, Is.Zero);
        Assert.That(model.FullCalls, Is.Zero, "an ILastLogitsModel's prefill skips the other rows' logits");
    }

    [Test]
    public async Task Options_the_device_cannot_follow_sample_on_the_host()
    {
        using var model = new StandInDevice(ModelRegistry.Load(GenerationTestModel.Directory));
        var topK = new GenerationOptions { Temperature = 0.8f, TopK = 5, MaxTokens = 5, Seed = 3, StopTokenIds = [] };
        var penalty = new GenerationOptions { Temperature = 0f, RepetitionPenalty = 1.3f, MaxTokens = 5, Seed = 3, StopTokenIds = [] };
        await Generate(model, topK, onDevice: true);
        await Generate(model, penalty, onDevice: true);
        Assert.That(model.SampleCalls, Is.Zero);
        Assert.That(model.LastCalls, Is.EqualTo(2 * (3 + 4)), "prefill (9 tokens in chunks of 4: 3 calls) then one call per step after the first");
    }
}
