namespace FpgaAccel.Driver;

/// <summary>What the driver knows of the device (issue 12). Only <see cref="Ready"/> accepts commands.</summary>
public enum DeviceState
{
    /// <summary>The device answers and runs commands.</summary>
    Ready,

    /// <summary>Reads return all ones and ID confirms it: the device dropped off the bus (spec 2).</summary>
    Lost,

    /// <summary>STATUS.FATAL is set: the device stopped, ERROR says why (spec 3).</summary>
    Fatal,

    /// <summary>A command, fence or reset passed its deadline, or the device lost fault records it owed an answer for.</summary>
    Hung,

    /// <summary><see cref="FpgaDevice.Recover"/> is waiting for the device, resetting it and restoring the driver's state.</summary>
    Recovering,
}

/// <summary>One move of <see cref="FpgaDevice.State"/>.</summary>
public sealed class DeviceStateChangedEventArgs : EventArgs
{
    internal DeviceStateChangedEventArgs(DeviceState previous, DeviceState state, string cause, FpgaAccelException? error, DateTimeOffset timestamp)
    {
        Previous = previous;
        State = state;
        Cause = cause;
        Error = error;
        Timestamp = timestamp;
    }

    /// <summary>The state before.</summary>
    public DeviceState Previous { get; }

    /// <summary>The state now.</summary>
    public DeviceState State { get; }

    /// <summary>Why, in words (what was read, what timed out).</summary>
    public string Cause { get; }

    /// <summary>The exception waiters were released with, for a move into Lost, Fatal or Hung; else null.</summary>
    public FpgaAccelException? Error { get; }

    /// <summary>When the driver moved the state.</summary>
    public DateTimeOffset Timestamp { get; }
}
