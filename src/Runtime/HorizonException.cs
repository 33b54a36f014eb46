namespace Horizon;

/// <summary>
/// Base of every error Horizon raises for bad input (files, shapes, ids, configuration). The message is one
/// line that says what is wrong and where, so a host can print it as it is.
/// </summary>
public class HorizonException : Exception
{
    public HorizonException(string message) : base(message) { }
    public HorizonException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>A checkpoint, config or spec binding that cannot be loaded (missing tensor, wrong shape, bad config key).</summary>
public sealed class ModelLoadException : HorizonException
{
    public ModelLoadException(string message) : base(message) { }
    public ModelLoadException(string message, Exception inner) : base(message, inner) { }
}
