using System.Collections.Generic;

namespace Horizon.Generators.Emitter
{
    /// <summary>
    /// Hands out C# identifiers that are unique within one scope (a method's locals, a class's fields). Names come
    /// from the spec, so two of them may meet (group "a_b" + node "c" and group "a" + node "b_c") or hit a name the
    /// generated code uses itself; a clash gets a number, a keyword gets '@'. Deterministic, so output is stable.
    /// </summary>
    internal sealed class NameAllocator
    {
        private readonly HashSet<string> _taken = new HashSet<string>(System.StringComparer.Ordinal);

        public NameAllocator(params string[] reserved) => _taken.UnionWith(reserved);

        public string Allocate(string preferred)
        {
            string name = preferred;
            for (int suffix = 2; _taken.Contains(name); suffix++)
                name = preferred + suffix.ToString(System.Globalization.CultureInfo.InvariantCulture);
            _taken.Add(name);
            return Naming.IsKeyword(name) ? "@" + name : name;
        }
    }
}
