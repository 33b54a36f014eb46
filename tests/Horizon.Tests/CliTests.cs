using System.Text.Json;
using NUnit.Framework;

namespace Horizon.Tests;

/// <summary>
/// The <c>horizon</c> command run in-process: <c>score</c> prints one JSON object matching transformers, and
/// every kind of bad input ends in exactly one line on stderr with exit code 1.
/// </summary>
[NonParallelizable]
public class CliTests
{
    private string _temp = null!;

    [SetUp]
    public void SetUp() => _temp = Directory.CreateTempSubdirectory("horizon-cli-").FullName;

    [TearDown]
    public void TearDown() => Directory.Delete(_temp, recursive: true);

    private static (int ExitCode, string Stdout, string Stderr) Run(params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            int code = Horizon.Cli.Program.Main(args);
            return (code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    private static string Fixture(string name) => Path.Combine(RepositoryPaths.Golden, name);

    private string CopyFixture(string name)
    {
        string target = Path.Combine(_temp, name);
        Directory.CreateDirectory(target);
        foreach (var file in Directory.GetFiles(Fixture(name)))
            File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
        return target;
    }

    private static void AssertOneLineError(int code, string stdout, string stderr, string expectedFragment)
    {
        Assert.That(code, Is.EqualTo(1), $"stderr: {stderr}");
        Assert.That(stdout, Is.Empty);
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), $"stderr: {stderr}");
        Assert.That(lines[0], Does.StartWith("error: "));
        Assert.That(lines[0], Does.Contain(expectedFragment));
    }

    [Test]
    public void Score_prints_logprobs_that_match_transformers()
    {
        var (tokens, expected) = GoldenTests.ReadExpected("qwen2-bias-tied");
        string tokensFile = Path.Combine(_temp, "tokens.txt");
        File.WriteAllText(tokensFile, string.Join(" \n", tokens));

        var (code, stdout, stderr) = Run("score", "--model", Fixture("qwen2-bias-tied"), "--tokens-file", tokensFile);

        Assert.That(code, Is.Zero, stderr);
        using var json = JsonDocument.Parse(stdout);
        var logprobs = json.RootElement.GetProperty("logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.That(json.RootElement.GetProperty("tokens").GetArrayLength(), Is.EqualTo(tokens.Length));
        Assert.That(logprobs, Has.Length.EqualTo(tokens.Length - 1));
        Assert.That(expected.Select((e, i) => Math.Abs(e - logprobs[i])).Max(), Is.LessThanOrEqualTo(1e-3));
        double perplexity = json.RootElement.GetProperty("perplexity").GetDouble();
        Assert.That(perplexity, Is.EqualTo(Math.Exp(-expected.Average())).Within(1e-3).Percent);
    }

    [Test]
    public void Score_accepts_comma_separated_tokens()
    {
        var (code, stdout, stderr) = Run("score", "--model", Path.Combine(RepositoryPaths.Models, "tiny-llama"), "--tokens", "1,2,3,4");
        Assert.That(code, Is.Zero, stderr);
        using var json = JsonDocument.Parse(stdout);
        Assert.That(json.RootElement.GetProperty("logprobs").GetArrayLength(), Is.EqualTo(3));
    }

    [Test]
    public void Inspect_prints_architecture_and_parameter_count()
    {
        var (code, stdout, stderr) = Run("inspect", "--model", Fixture("llama-bf16-sharded-rope-parameters"));
        Assert.That(code, Is.Zero, stderr);
        Assert.That(stdout, Does.Contain("LlamaForCausalLM"));
        Assert.That(stdout, Does.Contain("BF16"));
        // 300·96 (embedding) + 300·96 (head) + 96 (norm) + 3 layers × (attention 96·96·2 + 96·32·2, MLP 3·96·160, norms 2·96)
        long expected = 300 * 96 * 2 + 96 + 3 * (96 * 96 * 2 + 96 * 32 * 2 + 3 * 96 * 160 + 2 * 96);
        Assert.That(stdout, Does.Contain(expected.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Test]
    public void Missing_model_directory_is_one_line()
    {
        var (code, stdout, stderr) = Run("score", "--model", Path.Combine(_temp, "nowhere"), "--tokens", "1,2");
        AssertOneLineError(code, stdout, stderr, "not found");
    }

    [Test]
    public void Unknown_architecture_is_one_line()
    {
        string dir = CopyFixture("llama-gqa-untied");
        string config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("LlamaForCausalLM", "MambaForCausalLM"));
        var (code, stdout, stderr) = Run("inspect", "--model", dir);
        AssertOneLineError(code, stdout, stderr, "MambaForCausalLM");
    }

    [Test]
    public void Token_id_out_of_range_is_one_line()
    {
        var (code, stdout, stderr) = Run("score", "--model", Fixture("llama-gqa-untied"), "--tokens", "1,2,320");
        AssertOneLineError(code, stdout, stderr, "320");
    }

    [Test]
    public void Malformed_token_list_is_one_line()
    {
        var (code, stdout, stderr) = Run("score", "--model", Fixture("llama-gqa-untied"), "--tokens", "1,two,3");
        AssertOneLineError(code, stdout, stderr, "'two'");
    }

    [Test]
    public void Truncated_safetensors_is_one_line()
    {
        string dir = CopyFixture("llama-gqa-untied");
        string weights = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        File.WriteAllBytes(weights, bytes[..(bytes.Length - 10)]);
        var (code, stdout, stderr) = Run("score", "--model", dir, "--tokens", "1,2");
        AssertOneLineError(code, stdout, stderr, "model.safetensors");
    }

    [Test]
    public void Malformed_config_is_one_line()
    {
        string dir = CopyFixture("llama-gqa-untied");
        File.WriteAllText(Path.Combine(dir, "config.json"), "{ \"architectures\": [\"LlamaForCausalLM\"], ");
        var (code, stdout, stderr) = Run("inspect", "--model", dir);
        AssertOneLineError(code, stdout, stderr, "config.json");
    }

    [Test]
    public void Wrong_tensor_shape_names_the_tensor()
    {
        string dir = CopyFixture("llama-gqa-untied");
        string config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"intermediate_size\": 112", "\"intermediate_size\": 100"));
        var (code, stdout, stderr) = Run("inspect", "--model", dir);
        AssertOneLineError(code, stdout, stderr, "model.layers.0.mlp.gate_proj.weight");
    }

    /// <summary>A safetensors file: u64 little-endian header length, the header bytes, then the data bytes.</summary>
    private static byte[] CraftSafeTensors(ulong declaredLength, byte[] header, int dataBytes)
    {
        var bytes = new byte[8 + header.Length + dataBytes];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 8), declaredLength);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    private static byte[] CraftSafeTensors(string header, int dataBytes)
    {
        var utf8 = System.Text.Encoding.UTF8.GetBytes(header);
        return CraftSafeTensors((ulong)utf8.Length, utf8, dataBytes);
    }

    public static IEnumerable<TestCaseData> BrokenSafeTensors()
    {
        yield return new TestCaseData(new byte[5], "HeaderTooSmall");
        yield return new TestCaseData(CraftSafeTensors(200_000_000UL, "{}"u8.ToArray(), 0), "HeaderTooLarge");
        yield return new TestCaseData(CraftSafeTensors(1000UL, "{}"u8.ToArray(), 0), "InvalidHeaderLength");
        yield return new TestCaseData(CraftSafeTensors(1UL, [0xFF], 0), "InvalidHeaderUtf8");
        yield return new TestCaseData(CraftSafeTensors("{\"a\":", 0), "InvalidHeaderJson");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"shape":[1],"data_offsets":[0,1]}}""", 1), "InvalidTensorInfo");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"dtype":"F128","shape":[1],"data_offsets":[0,1]}}""", 1), "UnknownDType");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""", 2), "DuplicateName");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}""", 3), "InvalidOffset");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,1]}}""", 1), "ShapeOverflow");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}""", 2), "MisalignedSlice");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,3]}}""", 3), "TensorSizeMismatch");
        yield return new TestCaseData(CraftSafeTensors("""{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}""", 3), "IncompleteBuffer");
    }

    [TestCaseSource(nameof(BrokenSafeTensors))]
    public void Every_safetensors_rule_is_reported_in_one_line(byte[] file, string rule)
    {
        string dir = CopyFixture("llama-gqa-untied");
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), file);
        var (code, stdout, stderr) = Run("inspect", "--model", dir);
        AssertOneLineError(code, stdout, stderr, $"model.safetensors: {rule}:");
    }

    [Test]
    public void Score_of_a_block_transformer_honours_the_first_block_padding()
    {
        const string fixture = "block-transformer-b3-r3";
        using var json = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixture(fixture), "expected.json")));
        var tokens = json.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expected = json.RootElement.GetProperty("logprobs").EnumerateArray()
            .Select(e => e.ValueKind == JsonValueKind.Null ? double.NaN : e.GetDouble()).ToArray();
        int padding = json.RootElement.GetProperty("first_block_padding").GetInt32();

        var (code, stdout, stderr) = Run("score", "--model", Fixture(fixture), "--tokens", string.Join(",", tokens),
            "--first-block-padding", padding.ToString(System.Globalization.CultureInfo.InvariantCulture));

        Assert.That(code, Is.Zero, stderr);
        using var output = JsonDocument.Parse(stdout);
        var logprobs = output.RootElement.GetProperty("logprobs").EnumerateArray()
            .Select(e => e.ValueKind == JsonValueKind.Null ? double.NaN : e.GetDouble()).ToArray();
        Assert.That(logprobs.Select(double.IsNaN), Is.EqualTo(expected.Select(double.IsNaN)), "undefined (block 0) positions");
        double maxError = expected.Select((e, i) => double.IsNaN(e) ? 0 : Math.Abs(e - logprobs[i])).Max();
        Assert.That(maxError, Is.LessThanOrEqualTo(1e-3));
    }

    [TestCase("block-transformer-b3-r3", "99", "first-block padding 99")]
    [TestCase("gla-tied", "1", "two-level models only")]
    public void Bad_first_block_padding_is_one_line(string fixture, string padding, string fragment)
    {
        var (code, stdout, stderr) = Run("score", "--model", Fixture(fixture), "--tokens", "1,2,3", "--first-block-padding", padding);
        AssertOneLineError(code, stdout, stderr, fragment);
    }
}
