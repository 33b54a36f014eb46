using System.Collections.Concurrent;
using System.Reflection;
using Horizon.Ops;

namespace Horizon.Generation;

/// <summary>
/// Copies one layer's cache or state into another of the same shape: what generated states' <c>CopyFrom</c> calls
/// for each stateful node (fork/snapshot). Public because generated model classes live in the app's assembly.
/// </summary>
public static class StateCopy
{
    /// <summary>
    /// The tokens held and the length, copy-on-write (<see cref="KvCache.CopyFrom"/>): the source's full pages are
    /// shared, only its partial last page is copied, so a fork costs one page per attention layer, not the prefix.
    /// </summary>
    public static void Copy(KvCache source, KvCache destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        destination.CopyFrom(source);
    }

    public static void Copy(GlaState source, GlaState destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        destination.CopyFrom(source);
    }

    public static void Copy(HyenaState source, HyenaState destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        destination.CopyFrom(source);
    }

    /// <summary>
    /// Any other state: a field-by-field copy (arrays element by element into the destination's arrays, which must
    /// have the same lengths; other values assigned; nested Horizon objects copied the same way; a
    /// <see cref="KvCache"/> by its own copy-on-write <see cref="KvCache.CopyFrom"/>).
    /// </summary>
    public static void Copy<T>(T source, T destination) where T : class
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        if (source is KvCache cache && destination is KvCache targetCache)
        {
            targetCache.CopyFrom(cache);
            return;
        }
        CopyObject(source, destination, source.GetType());
    }

    private static readonly ConcurrentDictionary<Type, FieldInfo[]> FieldsByType = new();

    private static void CopyObject(object source, object destination, Type type)
    {
        if (destination.GetType() != type)
            throw new ArgumentException($"cannot copy a {type.FullName} into a {destination.GetType().FullName}");
        foreach (var field in FieldsByType.GetOrAdd(type, AllFields))
        {
            object? value = field.GetValue(source);
            object? target = field.GetValue(destination);
            switch (value)
            {
                // A KV cache field anywhere: its own copy-on-write copy (its page table must not be copied as a plain array).
                case KvCache cache when target is KvCache targetCache && !ReferenceEquals(cache, targetCache):
                    targetCache.CopyFrom(cache);
                    break;
                case Array array when target is Array targetArray && !ReferenceEquals(array, targetArray):
                    if (array.Length != targetArray.Length)
                        field.SetValue(destination, array.Clone());
                    else
                        Array.Copy(array, targetArray, array.Length);
                    break;
                case not null when !field.FieldType.IsValueType && value.GetType().Namespace?.StartsWith("Horizon", StringComparison.Ordinal) == true
                                   && target is not null && !ReferenceEquals(value, target) && value.GetType().IsClass:
                    CopyObject(value, target, value.GetType());
                    break;
                default:
                    field.SetValue(destination, value);
                    break;
            }
        }
    }

    private static FieldInfo[] AllFields(Type type)
    {
        var fields = new List<FieldInfo>();
        for (var t = type; t is not null && t != typeof(object); t = t.BaseType)
            fields.AddRange(t.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly));
        return fields.ToArray();
    }
}
