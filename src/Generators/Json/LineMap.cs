using System.Collections.Generic;

namespace Horizon.Generators.Json
{
    /// <summary>
    /// Turns text offsets into zero-based (line, column) pairs. Lines break where Roslyn's SourceText breaks them
    /// (CR, LF, CR LF, NEL, LS, PS), so a position printed here is the one an editor opened from the build log shows.
    /// </summary>
    internal sealed class LineMap
    {
        private readonly List<int> _lineStarts = new List<int> { 0 };
        private readonly int _length;

        public LineMap(string text)
        {
            _length = text.Length;
            for (int i = 0; i < text.Length; i++)
            {
                char c = text[i];
                if (c == '\r')
                {
                    if (i + 1 < text.Length && text[i + 1] == '\n')
                        i++;
                    _lineStarts.Add(i + 1);
                }
                else if (c == '\n' || c == '\u0085' || c == '\u2028' || c == '\u2029')
                {
                    _lineStarts.Add(i + 1);
                }
            }
        }

        public (int Line, int Column) Position(int offset)
        {
            if (offset < 0)
                offset = 0;
            if (offset > _length)
                offset = _length;
            // The last line start at or before the offset.
            int low = 0, high = _lineStarts.Count - 1;
            while (low < high)
            {
                int middle = (low + high + 1) / 2;
                if (_lineStarts[middle] <= offset)
                    low = middle;
                else
                    high = middle - 1;
            }
            return (low, offset - _lineStarts[low]);
        }
    }
}
