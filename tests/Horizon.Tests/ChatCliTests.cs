using NUnit.Framework;

namespace Horizon.Tests;

/// <summary><c>horizon chat</c> with its input piped: replies per line, history kept, /reset and /exit.</summary>
[NonParallelizable]
public class ChatCliTests
{
    [Test]
    public void Chat_answers_each_line_and_keeps_the_conversation()
    {
        var (code, stdout, stderr) = GenerationCliTests.Run("Hello there\nAnd again\n/exit\nnot read\n",
            "chat", "--model", GenerationTestModel.Directory, "--max-tokens", "5", "--seed", "2", "--no-progress", "--stats");
        Assert.That(code, Is.Zero, stderr);
        var replies = stdout.Split('\n');
        Assert.That(replies, Has.Length.EqualTo(3), stdout); // two replies, each ended by a newline
        var stats = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(stats, Has.Length.EqualTo(2), stderr);
        Assert.That(stats[0], Does.Not.Contain("cached"));
        Assert.That(stats[1], Does.Contain("cached"), "the second turn reuses the first from the session");
    }

    [Test]
    public void Chat_reset_starts_a_new_conversation_and_end_of_input_quits()
    {
        var (code, stdout, stderr) = GenerationCliTests.Run("one\n/reset\ntwo\n", "chat", "--model", GenerationTestModel.Directory, "--max-tokens", "3", "--greedy", "--no-progress", "--stats", "--system", "Be brief.");
        Assert.That(code, Is.Zero, stderr);
        var stats = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(stats, Has.Length.EqualTo(2), stderr);
        Assert.That(stats[1], Does.Not.Contain("cached"), "after /reset nothing is reused");
    }

    [Test]
    public void Chat_reports_bad_input_in_one_line()
    {
        var (code, _, stderr) = GenerationCliTests.Run("", "chat", "--model", Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid()), "--device", "cuda");
        GenerationCliTests.AssertOneLineError(code, stderr, "no-such-model");
        (code, _, stderr) = GenerationCliTests.Run("", "chat", "--model", Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid()));
        GenerationCliTests.AssertOneLineError(code, stderr, "no-such-model");
    }
}
