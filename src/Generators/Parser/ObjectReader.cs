using System.Collections.Generic;
using Horizon.Generators.Json;

namespace Horizon.Generators.Parser
{
    /// <summary>
    /// Reads the properties of one JSON object for the spec parser, remembering which names were asked for so
    /// that whatever is left over can be reported as unknown (a misspelt optional flag such as "qkv_biass" would
    /// otherwise be ignored and load a silently different model).
    /// </summary>
    internal sealed class ObjectReader
    {
        private readonly SpecParser _parser;
        private readonly Dictionary<string, JsonProperty> _first = new Dictionary<string, JsonProperty>(System.StringComparer.Ordinal);
        private readonly HashSet<string> _asked = new HashSet<string>(System.StringComparer.Ordinal);

        public ObjectReader(SpecParser parser, JsonObject json, string what)
        {
            _parser = parser;
            Json = json;
            What = what;
            foreach (var property in json.Properties)
            {
                if (_first.TryGetValue(property.Name, out var first))
                {
                    // The first occurrence wins; JSON readers disagree on which one to keep, so a repeat is an error.
                    parser.ReportAtName(
                        DiagnosticDescriptors.DuplicateName,
                        property,
                        $"{What} has the property \"{property.Name}\" twice (first at line {parser.LineOf(first.NameStart)})");
                }
                else
                {
                    _first.Add(property.Name, property);
                }
            }
        }

        public JsonObject Json { get; }

        /// <summary>How messages name this object, e.g. "mixer 'self_attn' of block group 'layers'".</summary>
        public string What { get; set; }

        public JsonProperty? Property(string name)
        {
            _asked.Add(name);
            return _first.TryGetValue(name, out var property) ? property : null;
        }

        public JsonNode? Optional(string name) => Property(name)?.Value;

        /// <summary>The value of <paramref name="name"/>; when absent, an HZ0003 at the object's opening brace.</summary>
        public JsonNode? Required(string name, string hint = "")
        {
            var value = Optional(name);
            if (value is null)
                _parser.Report(DiagnosticDescriptors.MissingProperty, Json.Start, 1, What, name, hint);
            return value;
        }

        /// <summary>Reports every property that no read asked for.</summary>
        public void ReportUnknown()
        {
            foreach (var property in Json.Properties)
            {
                if (_asked.Contains(property.Name) || _first[property.Name] != property)
                    continue;
                string? suggestion = Suggestions.Closest(property.Name, _asked);
                string known = string.Join(", ", Sorted(_asked));
                _parser.ReportAtName(
                    DiagnosticDescriptors.InvalidValue,
                    property,
                    $"{What} has an unknown property \"{property.Name}\"" +
                    (suggestion is null ? $" (known: {known})" : $" (did you mean \"{suggestion}\"?)"));
            }
        }

        private static List<string> Sorted(IEnumerable<string> names)
        {
            var list = new List<string>(names);
            list.Remove("$schema");
            list.Sort(System.StringComparer.Ordinal);
            return list;
        }
    }

    /// <summary>"Did you mean" hints: the closest name within a small edit distance.</summary>
    internal static class Suggestions
    {
        public static string? Closest(string name, IEnumerable<string> candidates)
        {
            string? best = null;
            int bestDistance = int.MaxValue;
            foreach (string candidate in candidates)
            {
                int distance = Distance(name, candidate);
                if (distance < bestDistance || (distance == bestDistance && best is not null && string.CompareOrdinal(candidate, best) < 0))
                {
                    best = candidate;
                    bestDistance = distance;
                }
            }
            // Beyond a third of the name it is a different name, not a typo.
            return best is not null && bestDistance <= System.Math.Max(1, name.Length / 3) ? best : null;
        }

        /// <summary>Levenshtein distance.</summary>
        private static int Distance(string a, string b)
        {
            var previous = new int[b.Length + 1];
            var current = new int[b.Length + 1];
            for (int j = 0; j <= b.Length; j++)
                previous[j] = j;
            for (int i = 1; i <= a.Length; i++)
            {
                current[0] = i;
                for (int j = 1; j <= b.Length; j++)
                {
                    int substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                    current[j] = System.Math.Min(substitution, System.Math.Min(previous[j], current[j - 1]) + 1);
                }
                var swap = previous;
                previous = current;
                current = swap;
            }
            return previous[b.Length];
        }
    }
}
