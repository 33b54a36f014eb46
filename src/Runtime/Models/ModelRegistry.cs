using System.Collections.Concurrent;

namespace Horizon;

/// <summary>
/// Maps config.json <c>architectures</c> names to generated model loaders. Generated models register themselves
/// from a module initializer, so loading by directory works for every spec compiled into the process.
/// </summary>
public static class ModelRegistry
{
    private static readonly ConcurrentDictionary<string, Func<ModelDirectory, ICausalLanguageModel>> Loaders = new(StringComparer.Ordinal);

    public static void Register(string architecture, Func<ModelDirectory, ICausalLanguageModel> load) => Loaders[architecture] = load;

    public static IReadOnlyCollection<string> Architectures => Loaders.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();

    /// <summary>Loads a Hugging Face model directory with the generated model of its architecture.</summary>
    public static ICausalLanguageModel Load(string directory)
    {
        var model = ModelDirectory.Open(directory);
        try
        {
            var architectures = model.Config.Architectures;
            if (architectures.Count == 0)
                throw new ModelLoadException($"{model.Config.Path}: no 'architectures' entry, so the model kind is unknown");
            foreach (var architecture in architectures)
            {
                if (Loaders.TryGetValue(architecture, out var load))
                    return load(model);
            }
            throw new ModelLoadException($"{model.Config.Path}: unsupported architecture '{string.Join(", ", architectures)}' (supported: {string.Join(", ", Architectures)})");
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a model directory onto <paramref name="device"/>: <see cref="HorizonDevice.Cpu"/> as <see cref="Load(string)"/>;
    /// <see cref="HorizonDevice.Cuda"/> uploads the generated model to the first CUDA device (bf16 weights) and frees
    /// the host copy, or says in one line why it cannot (no driver, no device, a node kind without CUDA kernels);
    /// <see cref="HorizonDevice.Auto"/> takes CUDA when that works and the CPU otherwise.
    /// </summary>
    public static ICausalLanguageModel Load(string directory, HorizonDevice device)
    {
        var model = Load(directory);
        if (device == HorizonDevice.Cpu)
            return model;
        try
        {
            string? reason = model is Cuda.ICudaCapableModel capable
                ? capable.CudaUnsupportedReason
                : $"{model.Info.Architecture}: a two-level model has no CUDA path yet; run it on the CPU";
            if (reason is null && device == HorizonDevice.Auto && !Cuda.CudaDiagnostics.Describe().Available)
                return model;
            if (reason is not null)
            {
                if (device == HorizonDevice.Auto)
                    return model;
                throw new HorizonException(reason);
            }
            var backend = Cuda.CudaBackend.Create();
            try
            {
                var onDevice = (Cuda.CudaCausalLanguageModel)((Cuda.ICudaCapableModel)model).ToCuda(backend);
                onDevice.OwnBackend(backend);
                model.Dispose();
                return onDevice;
            }
            catch
            {
                backend.Dispose();
                throw;
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}

/// <summary>Where a model runs.</summary>
public enum HorizonDevice
{
    /// <summary>The CPU backend (System.Numerics.Tensors), float32.</summary>
    Cpu,

    /// <summary>The first CUDA device: bf16 weights, float32 residual stream, Horizon's kernels and cuBLAS.</summary>
    Cuda,

    /// <summary>CUDA when the driver, a device and the model's kernels are there; else the CPU.</summary>
    Auto,
}
