using System.Text.Json;

namespace Horizon;

/// <summary>
/// A Hugging Face model directory: <c>config.json</c> plus <c>model.safetensors</c> or the shards listed in
/// <c>model.safetensors.index.json</c>. The safetensors files stay memory-mapped while this is open; a model
/// loaded from it owns it and disposes it.
/// </summary>
public sealed class ModelDirectory : IDisposable
{
    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, SafeTensorsFile> _byTensor;

    private ModelDirectory(string path, ModelConfig config, List<SafeTensorsFile> files, Dictionary<string, SafeTensorsFile> byTensor)
    {
        Path = path;
        Config = config;
        _files = files;
        _byTensor = byTensor;
    }

    public string Path { get; }
    public ModelConfig Config { get; }

    public IEnumerable<string> TensorNames => _byTensor.Keys;

    public static ModelDirectory Open(string path)
    {
        if (!Directory.Exists(path))
            throw new ModelLoadException($"{path}: model directory not found");
        var config = ModelConfig.Load(System.IO.Path.Combine(path, "config.json"));
        var files = new List<SafeTensorsFile>();
        var byTensor = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        try
        {
            string single = System.IO.Path.Combine(path, "model.safetensors");
            string index = System.IO.Path.Combine(path, "model.safetensors.index.json");
            if (File.Exists(single))
            {
                var file = SafeTensorsFile.Open(single);
                files.Add(file);
                foreach (var name in file.Tensors.Keys)
                    byTensor[name] = file;
            }
            else if (File.Exists(index))
            {
                foreach (var (tensor, shard) in ReadIndex(index))
                {
                    string shardPath = System.IO.Path.Combine(path, shard);
                    var file = files.FirstOrDefault(f => f.Path == shardPath);
                    if (file is null)
                    {
                        file = SafeTensorsFile.Open(shardPath);
                        files.Add(file);
                    }
                    if (!file.Tensors.ContainsKey(tensor))
                        throw new ModelLoadException($"{index}: tensor '{tensor}' is listed in shard '{shard}' but that file does not hold it");
                    byTensor[tensor] = file;
                }
            }
            else
            {
                throw new ModelLoadException($"{path}: neither model.safetensors nor model.safetensors.index.json is present");
            }
            return new ModelDirectory(path, config, files, byTensor);
        }
        catch
        {
            foreach (var file in files)
                file.Dispose();
            throw;
        }
    }

    private static IEnumerable<(string Tensor, string Shard)> ReadIndex(string index)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(index));
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{index}: invalid JSON at line {e.LineNumber + 1}");
        }
        using (document)
        {
            if (!document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{index}: no 'weight_map' object");
            var result = new List<(string, string)>();
            foreach (var entry in map.EnumerateObject())
            {
                string? shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                if (string.IsNullOrEmpty(shard) || shard.Contains('/') || shard.Contains('\\') || shard.Contains(".."))
                    throw new ModelLoadException($"{index}: tensor '{entry.Name}' names an invalid shard file");
                result.Add((entry.Name, shard));
            }
            return result;
        }
    }

    public bool Contains(string name) => _byTensor.ContainsKey(name);

    /// <summary>The stored tensor called <paramref name="name"/>; a missing name is a <see cref="ModelLoadException"/>.</summary>
    public (SafeTensorInfo Info, ReadOnlyMemory<byte> Data) Get(string name)
    {
        if (!_byTensor.TryGetValue(name, out var file))
            throw new ModelLoadException($"{Path}: tensor '{name}' not found in the checkpoint");
        return (file.Tensors[name], file.GetData(name));
    }

    /// <summary>Binds a 2-D weight [rows, cols], checking its shape and element type.</summary>
    public Matrix Matrix(string name, int rows, int cols)
    {
        var (info, data) = Get(name);
        CheckShape(info, [rows, cols]);
        return new Matrix(name, rows, cols, ToWeightDType(info), data);
    }

    /// <summary>Binds a 1-D weight [length] (norm scale, bias) widened to float32.</summary>
    public float[] Vector(string name, int length)
    {
        var (info, data) = Get(name);
        CheckShape(info, [length]);
        return WeightConversion.ToSingleArray(data.Span, ToWeightDType(info));
    }

    /// <summary>The binding of a tensor that may be absent (an optional bias): null when not in the checkpoint.</summary>
    public float[]? OptionalVector(string name, int length) => Contains(name) ? Vector(name, length) : null;

    private void CheckShape(SafeTensorInfo info, long[] expected)
    {
        if (!info.Shape.SequenceEqual(expected))
            throw new ModelLoadException($"{Path}: tensor '{info.Name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", expected)}]");
    }

    private WeightDType ToWeightDType(SafeTensorInfo info) => info.DType switch
    {
        SafeTensorsDType.F32 => WeightDType.F32,
        SafeTensorsDType.F16 => WeightDType.F16,
        SafeTensorsDType.BF16 => WeightDType.BF16,
        _ => throw new ModelLoadException($"{Path}: tensor '{info.Name}' has dtype {info.DType}; weights must be F32, F16 or BF16"),
    };

    public void Dispose()
    {
        foreach (var file in _files)
            file.Dispose();
        _files.Clear();
    }
}
