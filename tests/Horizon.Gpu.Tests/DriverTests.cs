using System.Text;
using Horizon.Cuda;
using NUnit.Framework;

namespace Horizon.Gpu.Tests;

/// <summary>The driver binding on a real device: copies, errors with their CUDA names, events, diagnostics, doctor.</summary>
[Category("Gpu")]
public class DriverTests
{
    private static CudaContext Context => Gpu.Context;

    [Test]
    public void Diagnostics_describe_the_device_and_the_ptx_chosen_for_it()
    {
        var report = CudaDiagnostics.Describe();
        Log.Write("# " + report.ToString().ReplaceLineEndings(" | "));
        Assert.That(report.Available, Is.True, report.Reason);
        Assert.That(report.DriverVersion, Is.GreaterThanOrEqualTo(12000));
        var device = report.Devices[0];
        Assert.That(device.Name, Is.EqualTo(Context.DeviceName));
        Assert.That(device.ComputeCapability.Major, Is.GreaterThanOrEqualTo(8));
        Assert.That(device.TotalMemoryBytes, Is.GreaterThan(device.FreeMemoryBytes));
        Assert.That(device.Problem, Is.Null);
        Assert.That(device.SelectedPtx, Has.Some.StartsWith("attention.").And.Some.StartsWith("elementwise."));
    }

    [Test]
    public void Doctor_prints_the_driver_and_the_device()
    {
        var stdout = new StringWriter();
        var old = Console.Out;
        Console.SetOut(stdout);
        int code;
        try
        {
            code = Horizon.Cli.Program.Main(["doctor"]);
        }
        finally
        {
            Console.SetOut(old);
        }
        Assert.That(code, Is.EqualTo(0));
        Assert.That(stdout.ToString(), Does.Contain("CUDA: on: driver ").And.Contain(Context.DeviceName).And.Contain("PTX for it: "));
    }

    [Test]
    public void Copies_round_trip_exactly_with_offsets()
    {
        var random = new Random(1);
        float[] values = Data.Normal(random, 1_000_003);
        using var variable = Context.Allocate<float>(values.Length + 10);
        variable.CopyToDevice(values, offset: 10);
        var back = new float[values.Length];
        variable.CopyToHost(back, offset: 10);
        Assert.That(back, Is.EqualTo(values));
        using var copy = Context.Allocate<float>(variable.Size);
        copy.CopyToDevice(variable);
        copy.CopyToHost(back, offset: 10);
        Assert.That(back, Is.EqualTo(values));
        Assert.Throws<ArgumentOutOfRangeException>(() => variable.CopyToHost(new float[12], offset: values.Length));
    }

    [Test]
    public void A_failed_allocation_names_the_error_and_the_operation()
    {
        var e = Assert.Throws<CudaException>(() => Context.Allocate<byte>(1L << 50));
        Assert.That(e!.ErrorName, Is.EqualTo("CUDA_ERROR_OUT_OF_MEMORY"));
        Assert.That(e.Message, Does.Contain("cuMemAlloc_v2").And.Contain("CUDA_ERROR_OUT_OF_MEMORY"));
        Assert.That(e, Is.InstanceOf<HorizonException>());
    }

    [Test]
    public void A_missing_kernel_names_the_kernel_and_the_module()
    {
        using var module = Context.LoadEmbeddedModule(CudaElementwiseKernels.ModuleName);
        var e = Assert.Throws<CudaException>(() => module.GetKernel("no_such_kernel_f32"));
        Assert.That(e!.ErrorName, Is.EqualTo("CUDA_ERROR_NOT_FOUND"));
        Assert.That(e.Message, Does.Contain("no_such_kernel_f32").And.Contain("elementwise"));
    }

    [Test]
    public void Bad_ptx_reports_the_jit_log()
    {
        byte[] ptx = Encoding.ASCII.GetBytes(".version 8.0\n.target sm_80\n.address_size 64\n.visible .entry broken() { this is not ptx; }\n");
        var e = Assert.Throws<CudaException>(() => Context.LoadModule("broken", ptx));
        Log.Write($"# bad PTX: {e!.Message}");
        Assert.That(e.Message, Does.Contain("cuModuleLoadDataEx").And.Contain("broken").And.Contain("JIT log"));
    }

    [Test]
    public void A_refused_launch_raises_at_the_launch()
    {
        var kernels = CudaElementwiseKernels.Load(Context);
        using var module = kernels.Module;
        using var x = Context.Allocate<float>(4);
        // The typed launcher of add_f32(float*, const float*, long long) on a 4-element variable; the block of 2048
        // threads is over the device's 1024 limit, so the driver refuses the launch before anything runs.
        var e = Assert.Throws<CudaException>(() => kernels.AddF32(1u, 2048u, 0, null, x, x, 4));
        Assert.That(e!.Message, Does.Contain("cuLaunchKernel").And.Contain("add_f32"));
        Context.Synchronize(); // nothing was queued: the context is still healthy
    }

    [Test]
    public void Every_generated_kernel_is_in_the_loaded_ptx()
    {
        // The launchers are generated from native/*.cu; the PTX loaded here (embedded, or HORIZON_PTX_DIR) must hold
        // every one of their kernels, so no launch can fail to find its function.
        foreach (var (module, name) in CudaKernelCatalog.All)
            Assert.That(Gpu.Ops.GetKernel(name).Name, Is.EqualTo(name), $"{module}: {name}");
    }

    [Test]
    public void Events_time_device_work_and_kernels_report_their_resources()
    {
        using var stream = Context.CreateStream();
        using var start = Context.CreateEvent();
        using var end = Context.CreateEvent();
        const int n = 1 << 24;
        using var a = Context.Allocate<float>(n);
        using var b = Context.Allocate<float>(n);
        a.Fill(0);
        b.Fill(0);
        start.Record(stream);
        for (int i = 0; i < 10; i++)
            Gpu.Ops.Add(a, b, n, stream);
        end.Record(stream);
        float ms = CudaEvent.ElapsedMilliseconds(start, end);
        Log.Write($"add_f32 x10 over {n} floats: {ms:F3} ms ({10.0 * 3 * 4 * n / (ms * 1e-3) / 1e9:F0} GB/s)");
        Assert.That(ms, Is.GreaterThan(0));

        foreach (var (_, name) in CudaOps.Kernels)
        {
            var kernel = Gpu.Ops.GetKernel(name);
            Log.Write($"kernel {name}: {kernel.Registers} registers, {kernel.LocalBytes} B local (spills), {kernel.StaticSharedBytes} B static shared, max {kernel.MaxThreadsPerBlock} threads");
        }
    }
}
