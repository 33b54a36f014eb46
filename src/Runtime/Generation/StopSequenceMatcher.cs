namespace Horizon.Generation;

/// <summary>
/// Finds stop strings in streamed text, whatever the token boundaries: text that could be the start of a
/// stop string is held back until the next piece shows whether it is one. What it lets out never contains,
/// or ends inside, a stop string.
/// </summary>
public sealed class StopSequenceMatcher
{
    private readonly string[] _stops;
    private string _held = "";

    public StopSequenceMatcher(IEnumerable<string> stops)
    {
        ArgumentNullException.ThrowIfNull(stops);
        _stops = stops.Where(s => !string.IsNullOrEmpty(s)).Distinct(StringComparer.Ordinal).ToArray();
    }

    /// <summary>True once a stop string was found; later input is ignored.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Text held back because it may start a stop string.</summary>
    public string Held => _held;

    /// <summary>Adds the next piece of text; returns the text that can be let out now.</summary>
    public string Append(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Stopped)
            return "";
        if (_stops.Length == 0)
            return text;
        string buffer = _held + text;
        int first = -1;
        foreach (var stop in _stops)
        {
            int at = buffer.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
                first = at;
        }
        if (first >= 0)
        {
            Stopped = true;
            _held = "";
            return buffer[..first];
        }
        int hold = 0;
        foreach (var stop in _stops)
        {
            for (int length = Math.Min(stop.Length - 1, buffer.Length); length > hold; length--)
            {
                if (string.CompareOrdinal(buffer, buffer.Length - length, stop, 0, length) == 0)
                {
                    hold = length;
                    break;
                }
            }
        }
        _held = buffer[(buffer.Length - hold)..];
        return buffer[..(buffer.Length - hold)];
    }

    /// <summary>Ends the stream: what was held back comes out (it was no stop string).</summary>
    public string Flush()
    {
        string rest = Stopped ? "" : _held;
        _held = "";
        return rest;
    }
}
