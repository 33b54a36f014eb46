namespace Horizon.Tests;

/// <summary>Locates files of the repository (fixtures, specs, baselines) from the test binary's folder.</summary>
public static class RepositoryPaths
{
    public static string Root { get; } = FindRoot();

    public static string Golden => Path.Combine(Root, "tests", "golden");

    public static string Models => Path.Combine(Root, "models");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Runtime.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"Runtime.sln not found above {AppContext.BaseDirectory}");
    }
}
