using System.Globalization;

namespace Horizon;

/// <summary>Parses token id lists written as integers separated by commas and/or white space.</summary>
public static class TokenIds
{
    /// <param name="text">e.g. "1,2,3" or "1 2\n3".</param>
    /// <param name="source">where the text came from, named in errors (a file path or an option).</param>
    public static int[] Parse(string text, string source)
    {
        var parts = text.Split([',', ' ', '\t', '\r', '\n'], StringSplitOptions.RemoveEmptyEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 0)
                throw new HorizonException($"{source}: '{parts[i]}' (item {i + 1}) is not a token id (a non-negative integer)");
        }
        if (ids.Length == 0)
            throw new HorizonException($"{source}: no token ids");
        return ids;
    }
}
