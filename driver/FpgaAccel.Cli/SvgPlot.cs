using System.Globalization;
using System.Text;

namespace FpgaAccel.Cli;

/// <summary>
/// The frame the jitter plots share: a white canvas with a title, grid lines with their labels, a bordered plot area
/// with axis labels, and the series colours. Coordinates are SVG user units; numbers are written invariant.
/// </summary>
internal sealed class SvgPlot(double width, double height, double left, double right, double top, double bottom)
{
    private static readonly CultureInfo s_invariant = CultureInfo.InvariantCulture;

    /// <summary>One colour per mode, in the order of the report's modes.</summary>
    public static readonly string[] Colours = ["#1f77b4", "#d62728"];

    public StringBuilder Text { get; } = new();

    public double Width => width;

    public double Height => height;

    public double Left => left;

    public double Right => right;

    public double Top => top;

    public double Bottom => bottom;

    /// <summary>The opening tag, the background and the title, centred on <paramref name="titleX"/>.</summary>
    public void Begin(double titleX, string title)
    {
        Text.Append(s_invariant, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        Text.Append(s_invariant, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        Text.Append(s_invariant, $"<text x=\"{titleX}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n");
    }

    /// <summary>A vertical grid line at <paramref name="x"/>, labelled under the plot area.</summary>
    public void VerticalGridLine(double x, string label, string stroke = "#ddd")
    {
        Text.Append(s_invariant, $"<line x1=\"{x:0.#}\" y1=\"{top}\" x2=\"{x:0.#}\" y2=\"{height - bottom}\" stroke=\"{stroke}\"/>\n");
        Text.Append(s_invariant, $"<text x=\"{x:0.#}\" y=\"{height - bottom + 18}\" text-anchor=\"middle\">{label}</text>\n");
    }

    /// <summary>A horizontal grid line at <paramref name="y"/>, labelled left of the plot area.</summary>
    public void HorizontalGridLine(double y, string label)
    {
        Text.Append(s_invariant, $"<line x1=\"{left}\" y1=\"{y:0.#}\" x2=\"{width - right}\" y2=\"{y:0.#}\" stroke=\"#ddd\"/>\n");
        Text.Append(s_invariant, $"<text x=\"{left - 8}\" y=\"{y + 4:0.#}\" text-anchor=\"end\">{label}</text>\n");
    }

    /// <summary>The plot area's border and the two axis labels (the y label turned on its side).</summary>
    public void Frame(string xLabel, string yLabel)
    {
        Text.Append(s_invariant, $"<rect x=\"{left}\" y=\"{top}\" width=\"{width - left - right}\" height=\"{height - top - bottom}\" fill=\"none\" stroke=\"#444\"/>\n");
        Text.Append(s_invariant, $"<text x=\"{(left + width - right) / 2}\" y=\"{height - 16}\" text-anchor=\"middle\">{xLabel}</text>\n");
        Text.Append(s_invariant, $"<text x=\"18\" y=\"{(top + height - bottom) / 2}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {(top + height - bottom) / 2})\">{yLabel}</text>\n");
    }

    /// <summary>Closes the document and writes it to <paramref name="stream"/> as UTF-8.</summary>
    public void End(Stream stream)
    {
        Text.Append("</svg>\n");
        stream.Write(Encoding.UTF8.GetBytes(Text.ToString()));
    }
}
