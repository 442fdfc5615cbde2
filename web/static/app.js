// Shared by every page: colour swatches for catalog colour names (CSP forbids inline styles in markup,
// so the colour is set through the CSSOM).
(() => {
  "use strict";
  const COLOURS = {
    "navy blue": "#1f2a5a", "off white": "#f4f1e8", "cream": "#f3e9d2", "beige": "#dcc9a6", "khaki": "#bfae7c",
    "olive": "#6b6b2e", "maroon": "#6d1a24", "burgundy": "#6b1630", "magenta": "#c2188b", "mustard": "#d4a017",
    "peach": "#f6c4a4", "rust": "#a8441b", "teal": "#16808a", "turquoise blue": "#2bb5c4", "sea green": "#2e8b57",
    "lime green": "#7cc242", "fluorescent green": "#4cff4c", "charcoal": "#36393d", "grey melange": "#9ea1a6",
    "coffee brown": "#4b3021", "mushroom brown": "#a18f7a", "taupe": "#8b7d6b", "nude": "#e3bc9a",
    "skin": "#e7c3a1", "bronze": "#a0672c", "copper": "#b8733d", "gold": "#d4af37", "silver": "#c0c0c8",
    "steel": "#8a9199", "metallic": "#a9acb3", "rose": "#e8a0a8", "mauve": "#b28ba4", "lavender": "#b9a6d9",
    "tan": "#c8a173", "multi": "conic-gradient(#e53935, #fdd835, #43a047, #1e88e5, #8e24aa, #e53935)",
  };
  function paint(root) {
    for (const el of (root || document).querySelectorAll(".swatch[data-colour]")) {
      const name = el.dataset.colour.trim().toLowerCase();
      const colour = COLOURS[name] || name.replace(/\s+/g, "");
      el.style.background = colour;
      if (!el.style.background) el.classList.add("swatch-unknown");
    }
  }
  window.lookalikePaintSwatches = paint;
  paint(document);
})();
