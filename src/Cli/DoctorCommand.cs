using System.CommandLine;
using Horizon.Cuda;

namespace Horizon.Cli;

/// <summary>
/// <c>horizon doctor</c>: which CUDA driver, devices, PTX builds and cuBLAS this machine has, and why CUDA is off
/// when it is. Always exits 0: reporting a missing GPU is its job, not an error.
/// </summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var command = new Command("doctor", "Report the CUDA driver, devices, kernel PTX and cuBLAS found here, and why CUDA is off if it is.");
        command.SetAction(_ =>
        {
            Console.Out.WriteLine($"horizon {typeof(CudaDiagnostics).Assembly.GetName().Version?.ToString(3)} on {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}");
            Console.Out.WriteLine(CudaDiagnostics.Describe().ToString());
            return 0;
        });
        return command;
    }
}
