// A consumer of the Horizon.Runtime package: its own spec (models/tiny-llama.model.json) became the typed
// class HelloHorizon.TinyLlama at compile time. Usage: HelloHorizon MODEL_DIR [expected.json]
using System.Text.Json;
using Horizon;
using HelloHorizon;

if (args.Length < 1)
{
    Console.Error.WriteLine("usage: HelloHorizon MODEL_DIR [expected.json]");
    return 2;
}

using var model = TinyLlama.Load(args[0]);
Console.WriteLine($"loaded {model.Info.Architecture}: {model.Sizes.NumLayers} layers, hidden {model.Sizes.HiddenSize}, {model.Info.ParameterCount:N0} parameters");

int[] tokens = [1, 17, 42, 99, 5, 7, 11, 13];
var state = model.CreateState(capacity: 64);
var logits = new float[tokens.Length * model.VocabSize];
model.Forward(tokens, state, logits);
int next = Array.IndexOf(logits, logits.AsSpan(^model.VocabSize..).ToArray().Max(), (tokens.Length - 1) * model.VocabSize) - (tokens.Length - 1) * model.VocabSize;
Console.WriteLine($"forward over {tokens.Length} tokens: state holds {state.Length}, greedy next token {next}");

if (args.Length > 1)
{
    // Check against transformers' log-probs for the same checkpoint.
    using var expected = JsonDocument.Parse(File.ReadAllBytes(args[1]));
    var ids = expected.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
    var reference = expected.RootElement.GetProperty("logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
    var score = Scoring.Score(model, ids);
    double maxError = reference.Select((r, i) => Math.Abs(r - score.LogProbs[i])).Max();
    Console.WriteLine($"max |Δ logprob| vs transformers over {reference.Length} tokens: {maxError:E2}");
    if (maxError > 1e-3)
        return 1;
}
return 0;
