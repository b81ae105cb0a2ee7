namespace FpgaAccel.VlabGuest;

/// <summary>A check failed; the message is the FAIL line's reason.</summary>
internal sealed class CheckFailedException(string reason) : Exception(reason);

/// <summary>
/// Runs named checks in order and prints one line per check, <c>PASS name</c> or
/// <c>FAIL name: reason</c>, then the closing <c>N passed, N failed</c> line the host looks for.
/// A check that needs an earlier one fails with the name of the one it needed rather than
/// running against missing state.
/// </summary>
internal sealed class CheckRunner(TextWriter output)
{
    private readonly HashSet<string> _failed = [];

    public int Passed { get; private set; }

    public int Failed { get; private set; }

    /// <summary>Runs <paramref name="body"/>; any exception fails the check with its type and message.</summary>
    public bool Run(string name, Action body, params string[] needs)
    {
        var missing = needs.FirstOrDefault(_failed.Contains);
        if (missing is not null)
        {
            return Fail(name, $"not run: needs '{missing}', which failed");
        }

        try
        {
            body();
        }
        catch (CheckFailedException ex)
        {
            return Fail(name, ex.Message);
        }
        catch (Exception ex)
        {
            return Fail(name, $"{ex.GetType().Name}: {ex.Message}");
        }

        Passed++;
        output.WriteLine($"PASS {name}");
        output.Flush();
        return true;
    }

    /// <summary>Writes an indented detail line under the current check (not counted).</summary>
    public void Note(string text)
    {
        output.WriteLine($"     {text}");
        output.Flush();
    }

    /// <summary>The closing line; the host's pass/fail decision reads exactly this form.</summary>
    public void Close()
    {
        output.WriteLine($"{Passed} passed, {Failed} failed");
        output.Flush();
    }

    private bool Fail(string name, string reason)
    {
        Failed++;
        _failed.Add(name);
        // One line per check: a multi-line message is folded.
        output.WriteLine($"FAIL {name}: {reason.ReplaceLineEndings(" | ")}");
        output.Flush();
        return false;
    }
}

/// <summary>Assertions for check bodies; each failure names what was expected and what was seen.</summary>
internal static class Expect
{
    public static void True(bool condition, string reason)
    {
        if (!condition)
        {
            throw new CheckFailedException(reason);
        }
    }

    public static void Equal<T>(T expected, T actual, string what)
        where T : IEquatable<T>
    {
        if (!expected.Equals(actual))
        {
            throw new CheckFailedException($"{what}: expected {Format(expected)}, read {Format(actual)}");
        }
    }

    /// <summary>Runs <paramref name="body"/> and returns the <typeparamref name="TException"/> it must throw.</summary>
    public static TException Throws<TException>(Action body, string what)
        where TException : Exception
    {
        try
        {
            body();
        }
        catch (TException ex)
        {
            return ex;
        }
        catch (Exception ex)
        {
            throw new CheckFailedException($"{what}: expected {typeof(TException).Name}, got {ex.GetType().Name}: {ex.Message}");
        }

        throw new CheckFailedException($"{what}: expected {typeof(TException).Name}, but it succeeded");
    }

    private static string Format<T>(T value) => value switch
    {
        uint u => $"0x{u:x8}",
        ulong u => $"0x{u:x}",
        _ => $"{value}",
    };
}
