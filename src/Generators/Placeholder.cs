namespace Horizon.Generators
{
    internal static class Placeholder { }
}
