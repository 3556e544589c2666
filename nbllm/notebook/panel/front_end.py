"""The parts of the panel and the Labeler that need JavaScript, as anywidget widgets.

Two small front ends, each an :class:`anywidget.AnyWidget` whose ES module is
the string below (inline in the package: nothing is fetched, so they work
offline, and no build step):

- :class:`EnterAddsTag`: JupyterLab takes Enter in a widget's text field for
  its own shortcuts, so the labels box (an ipywidgets ``TagsInput``) never
  sees the change event that commits a tag.  This invisible widget, placed
  beside the box, listens for Enter on its panel (the nearest
  ``.nbllm-panel``) before JupyterLab does and commits the typed tag.  It
  also commits a typed tag when the mouse goes down anywhere outside the
  box: left to itself, the box commits it on the change event that leaving
  fires, focuses its own field again and is then redrawn with the new tags,
  so the click that left it (on the texts box, say) ended with the focus on
  the page's body and the next typed text lost.  Committed before the
  click's focus change, the click lands where it was aimed.
- :class:`CodeBox`: one snippet of "Copy as code": a title, a Copy button,
  an optional note and the code in a read-only text area.  The code and the
  note travel as traitlets and the front end puts them in the page as text
  (``textContent``, ``value``), never as HTML, so a label such as ``<b>``
  shows as typed.

Colours come from JupyterLab's theme variables, light or dark, with fallbacks
for other front ends.
"""

import anywidget
import traitlets

from ..display import NO_MATH

_ENTER_ESM = """
// Attached once the widget is in the page (a view is rendered before its
// parent puts it there); one listener per panel, removed with the view.
export default {
  render({ el }) {
    let panel = null, frames = 0, stopped = false, owner = false;
    const commit = (e) => {
      const t = e.target;
      if (e.key !== "Enter" || !t.matches(".jupyter-widget-tagsinput input")
          || !t.value.trim()) return;
      e.preventDefault();
      e.stopPropagation();  // before JupyterLab's own shortcuts see the key
      t.dispatchEvent(new Event("change"));
    };
    // A mouse press outside the box while a tag is typed in it: commit the
    // tag now, before the press moves the focus (see the module's note).
    const leave = (e) => {
      const t = document.activeElement;
      if (!panel || !t || !panel.contains(t)
          || !t.matches(".jupyter-widget-tagsinput input") || !t.value.trim()) return;
      if (t.closest(".jupyter-widget-tagsinput").contains(e.target)) return;
      t.dispatchEvent(new Event("change"));
    };
    const attach = () => {
      if (stopped) return;
      panel = el.closest(".nbllm-panel");
      if (panel) {
        if (!panel.dataset.nbllmEnter) {
          panel.dataset.nbllmEnter = "1";
          panel.addEventListener("keydown", commit, true);
          // The whole page: a press in another cell leaves the box too.
          document.addEventListener("mousedown", leave, true);
          owner = true;
        }
      } else if (frames++ < 3600) {  // about a minute of shown frames
        requestAnimationFrame(attach);
      }
    };
    attach();
    return () => {
      stopped = true;
      if (owner) {
        panel.removeEventListener("keydown", commit, true);
        document.removeEventListener("mousedown", leave, true);
        delete panel.dataset.nbllmEnter;
      }
    };
  },
};
"""

_CODE_ESM = """
// Everything shown is set as text (textContent, value): never as HTML.
export default {
  render({ model, el }) {
    let timer = null;
    const box = document.createElement("div");
    el.appendChild(box);
    const draw = () => {
      const code = model.get("code"), note = model.get("note");
      box.replaceChildren();
      box.className = "";
      if (!model.get("title") && code === null && !note) return;  // nothing yet
      box.className = "nbllm-code";
      const title = document.createElement("b");
      title.textContent = model.get("title");
      box.append(title);
      let area = null;
      if (code !== null) {
        box.style.margin = "4px 0";
        const button = document.createElement("button");
        button.className = "nbllm-copy jupyter-button";
        button.textContent = "Copy";
        // The clipboard API where the page may use it (JupyterLab on
        // localhost or https), else the older execCommand on the selection.
        button.addEventListener("click", () => {
          const done = () => {
            button.textContent = "Copied";
            clearTimeout(timer);
            timer = setTimeout(() => { button.textContent = "Copy"; }, 1500);
          };
          const old = () => { area.select(); document.execCommand("copy"); done(); };
          if (navigator.clipboard && window.isSecureContext) {
            navigator.clipboard.writeText(area.value).then(done, old);
          } else {
            old();
          }
        });
        box.append(" ", button);
      }
      if (note) {
        const line = document.createElement("div");
        line.className = "nbllm-code-note";
        line.textContent = note;
        box.append(line);
      }
      if (code !== null) {
        area = document.createElement("textarea");
        area.readOnly = true;
        area.spellcheck = false;
        area.rows = Math.min(Math.max(code.split("\\n").length, 2), 14);
        Object.assign(area.style, {
          width: "95%",
          fontFamily: "var(--jp-code-font-family, monospace)",
          fontSize: "12px",
          color: "var(--jp-content-font-color1, #000)",
          background: "var(--jp-cell-editor-background, #f7f7f7)",
          border: "1px solid var(--jp-border-color2, #ccc)",
        });
        area.value = code;
        box.append(area);
      }
    };
    draw();
    model.on("change:title", draw);
    model.on("change:code", draw);
    model.on("change:note", draw);
    return () => {
      clearTimeout(timer);
      model.off("change:title", draw);
      model.off("change:code", draw);
      model.off("change:note", draw);
    };
  },
};
"""


class EnterAddsTag(anywidget.AnyWidget):
    """Enter, or a click elsewhere, commits the tag typed in the panel's labels
    box (see the module).

    It shows nothing; put it in the panel, beside the box.  A fixed script:
    no user text goes in it.
    """

    _esm = _ENTER_ESM


class CodeBox(anywidget.AnyWidget):
    """One snippet with a Copy button that puts exactly the code on the clipboard.

    Parameters
    ----------
    title : str
        The line above the code ("As Python").
    code : str or None
        The snippet; None shows the title and the note only (no button), and
        nothing at all while the title and the note are empty too.
    note : str
        One line shown above the code ('' for none).
    """

    _esm = _CODE_ESM
    title = traitlets.Unicode("").tag(sync=True)
    code = traitlets.Unicode(None, allow_none=True).tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)

    def __init__(self, title="", code=None, note="", **kwargs):
        super().__init__(title=title, code=code, note=note, **kwargs)
        for name in NO_MATH.split():  # a $ in the code is not maths
            self.add_class(name)

    def show(self, title, code, note=""):
        """Show another snippet (one update of the front end)."""
        with self.hold_sync():
            self.title, self.code, self.note = title, code, note
