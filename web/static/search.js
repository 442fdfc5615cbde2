// The search page: upload (file picker, drag-and-drop, paste), crop box, detected garments (boxes + chips; each
// garment's results come in the first answer, so picking one needs no new upload), filters, "more like this",
// "load more". Talks to the JSON API only; the server renders nothing here but the first page.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const form = $("search-form");
  const fileInput = $("file-input");
  const dropzone = $("dropzone");
  const stage = $("crop-stage");
  const queryImage = $("query-image");
  const cropBox = $("crop-box");
  const evidenceBox = $("evidence-box");
  const caption = $("query-caption");
  const clearCrop = $("clear-crop");
  const results = $("results");
  const statusEl = $("status");
  const errorEl = $("error");
  const loadMore = $("load-more");
  const spinner = $("spinner");
  const threshold = $("threshold");
  const thresholdValue = $("threshold-value");
  const template = $("card-template");
  const PAGE = Number(document.body.dataset.pageSize || 24);
  const MAX_BYTES = Number(document.body.dataset.maxUploadMb || 16) * 1024 * 1024;
  // On phones the query panel fills the first screen: bring new results into view.
  const narrowScreen = window.matchMedia("(max-width: 860px)");

  const state = { file: null, itemId: null, itemTitle: "", crop: null, offset: 0, seq: 0, objectUrl: null,
                  text: "", positive: [], negative: [], garments: [], garment: null, defaultGarment: null,
                  searchId: null };
  const garmentBoxes = $("garment-boxes");
  const garmentChips = $("garment-chips");
  const SLOT_NAMES = { topwear: "Top", bottomwear: "Bottom", one_piece: "Dress", footwear: "Shoes", bag: "Bag",
                       accessory: "Accessory" };
  const textInput = $("text-query");
  const modifierInput = $("modifier");

  // ---- query parameters ------------------------------------------------------------------------------
  function currentFilters() {
    const filters = {};
    for (const select of form.querySelectorAll("select[name=filter]")) {
      if (!select.value) continue;
      const column = select.dataset.column;
      filters[column] = [select.value.slice(column.length + 1)];
    }
    return filters;
  }
  function currentCollapse() {
    const select = $("collapse");
    return select ? select.value : "none";
  }
  function currentThreshold() {
    const value = Number(threshold.value);
    return value > 0 ? value : null;
  }

  // ---- running a search ------------------------------------------------------------------------------
  // Words, modifier and thumbs up / down (docs/text-search.md): sent with the photo, or alone as JSON.
  function currentModifier() {
    return modifierInput && state.file ? modifierInput.value.trim() : "";
  }
  function hasWordsOrThumbs() {
    return Boolean(state.text || currentModifier() || state.positive.length || state.negative.length);
  }

  async function run(append) {
    if (!state.file && state.itemId === null && !state.text && !state.positive.length) return;
    const seq = ++state.seq;
    const offset = append ? state.offset : 0;
    if (!append) {
      clearGarments();
      // web/static/outfit.js completes the look for the same query.
      announceQuery(state.crop);
    }
    setBusy(true);
    hideError();
    try {
      let response;
      if (state.file) {
        const body = new FormData();
        body.append("image", state.file, state.file.name || "photo");
        body.append("k", String(PAGE));
        body.append("offset", String(offset));
        const filters = currentFilters();
        if (Object.keys(filters).length) body.append("filters", JSON.stringify(filters));
        const t = currentThreshold();
        if (t !== null) body.append("threshold", String(t));
        const crop = state.crop || pickedGarmentCrop();
        if (crop) body.append("crop", crop.map((v) => v.toFixed(4)).join(","));
        if (currentCollapse() !== "none") body.append("collapse", currentCollapse());
        if (currentModifier()) body.append("text", currentModifier());
        if (state.positive.length) body.append("positive_ids", state.positive.join(","));
        if (state.negative.length) body.append("negative_ids", state.negative.join(","));
        response = await fetch("/api/search", { method: "POST", body });
      } else if (state.itemId === null || hasWordsOrThumbs()) {
        const body = { k: PAGE, offset };
        const filters = currentFilters();
        if (Object.keys(filters).length) body.filters = filters;
        const t = currentThreshold();
        if (t !== null) body.threshold = t;
        if (state.text) body.text = state.text;
        const positive = state.itemId !== null ? [state.itemId, ...state.positive] : state.positive;
        if (positive.length) body.positive_ids = positive;
        if (state.negative.length) body.negative_ids = state.negative;
        if (currentCollapse() !== "none") body.collapse = currentCollapse();
        response = await fetch("/api/search", {
          method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
        });
      } else {
        const params = new URLSearchParams({ k: String(PAGE), offset: String(offset) });
        for (const [column, values] of Object.entries(currentFilters())) {
          for (const value of values) params.append("filter", `${column}:${value}`);
        }
        const t = currentThreshold();
        if (t !== null) params.set("threshold", String(t));
        if (currentCollapse() !== "none") params.set("collapse", currentCollapse());
        response = await fetch(`/api/items/${state.itemId}/similar?${params}`);
      }
      const data = await response.json().catch(() => null);
      if (seq !== state.seq) return; // a newer search has started; drop this answer
      if (!response.ok) {
        const message = data && data.error ? data.error.message : `the server answered ${response.status}`;
        showError(capitalize(message));
        if (!append) clearResults("");
        return;
      }
      render(data, append, offset);
    } catch (err) {
      if (seq === state.seq) showError("Could not reach the server. Check the connection and try again.");
    } finally {
      if (seq === state.seq) setBusy(false);
    }
  }

  function render(data, append, offset) {
    if (!append && data.garments && data.garments.length && !state.crop) {
      showGarments(data);
      return;
    }
    if (!append) results.replaceChildren();
    const fragment = document.createDocumentFragment();
    for (const hit of data.results) fragment.appendChild(makeCard(hit, data.search_id));
    results.appendChild(fragment);
    if (window.lookalikePaintSwatches) window.lookalikePaintSwatches(results);
    state.offset = offset + data.results.length;
    loadMore.hidden = !data.has_more;
    const shown = results.querySelectorAll(".card").length;
    let text;
    if (shown === 0) {
      text = "No matching items. Try clearing a filter or lowering the minimum similarity.";
    } else if (state.itemId !== null) {
      text = `${shown} items like “${state.itemTitle || "this item"}”`;
    } else {
      text = `${shown} results`;
      if (state.crop) text += " for your selection";
      else if (data.query && data.query.localized) text += ` · searched ${data.regions.length} regions of your photo`;
      // Catalog labels the words named rank items of that colour / type first (docs/text-search.md).
      const labels = (data.query && data.query.labels) || {};
      const named = [...(labels.colour || []), ...(labels.article_type || [])];
      if (named.length) text += ` · matching ${named.join(", ")}`;
    }
    statusEl.textContent = text;
    showEvidence(data);
    if (!append && narrowScreen.matches && shown) statusEl.scrollIntoView({ behavior: "smooth", block: "start" });
    results.setAttribute("aria-busy", "false");
  }

  // searchId: the photo search that found the hit ("Why?" in curation.js explains it against that search's photo).
  function makeCard(hit, searchId) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.itemId = String(hit.id);
    if (searchId) {
      node.dataset.searchId = searchId;
      if (hit.region !== undefined) node.dataset.region = String(hit.region);
    }
    const thumb = node.querySelector(".card-thumb");
    thumb.href = hit.item_url;
    const img = thumb.querySelector("img");
    img.src = hit.thumb_url;
    img.alt = hit.title || hit.external_id;
    const title = node.querySelector(".card-title");
    title.href = hit.item_url;
    title.textContent = hit.title || hit.external_id;
    title.title = hit.title || "";
    node.querySelector(".card-category").textContent =
      [hit.master_category, hit.article_type].filter(Boolean).join(" · ");
    const colour = node.querySelector(".card-colour");
    if (hit.base_colour) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.dataset.colour = hit.base_colour;
      colour.append(swatch, hit.base_colour);
    }
    node.querySelector(".score").textContent = hit.score.toFixed(2);
    if (hit.more_ids && hit.more_ids.length) {
      const moreBadge = document.createElement("span");
      moreBadge.className = "card-more";
      moreBadge.textContent = `+${hit.more_ids.length} more`;
      moreBadge.title = `Also in this group: items ${hit.more_ids.join(", ")}`;
      node.querySelector(".score").after(moreBadge);
    }
    const more = node.querySelector(".more-like");
    more.href = `/?item=${hit.id}`;
    more.dataset.item = String(hit.id);
    more.dataset.title = hit.title || "";
    return node;
  }

  // ---- detected garments -----------------------------------------------------------------------------
  function announceQuery(crop) {
    document.dispatchEvent(new CustomEvent("lookalike:query", {
      detail: { file: state.file, itemId: state.itemId, crop, filters: currentFilters() },
    }));
  }
  // The server searches a garment's box grown by 8% per side (engine.localize.pad_box); "load more" of a picked
  // garment sends the same box as a crop, so its next pages continue the same ranking.
  function padBox(box, share = 0.08) {
    const dx = (box[2] - box[0]) * share;
    const dy = (box[3] - box[1]) * share;
    return [Math.max(0, box[0] - dx), Math.max(0, box[1] - dy), Math.min(1, box[2] + dx), Math.min(1, box[3] + dy)];
  }
  function pickedGarmentCrop() {
    if (state.garment === null || state.garment === state.defaultGarment) return null;
    return padBox(state.garments[state.garment].box);
  }
  function clearGarments() {
    state.garments = [];
    state.garment = null;
    state.defaultGarment = null;
    garmentBoxes.replaceChildren();
    garmentChips.replaceChildren();
    garmentChips.hidden = true;
  }
  function slotName(slot) {
    return SLOT_NAMES[slot] || (slot ? slot.charAt(0).toUpperCase() + slot.slice(1).replace("_", " ") : "Garment");
  }
  function showGarments(data) {
    clearGarments();
    state.garments = data.garments;
    state.defaultGarment = data.default_garment;
    state.searchId = data.search_id;
    data.garments.forEach((garment, index) => {
      const label = `${slotName(garment.slot)} (${Math.round(garment.confidence * 100)}% sure)`;
      const box = document.createElement("button");
      box.type = "button";
      box.className = "garment-box";
      box.dataset.index = String(index);
      box.title = label;
      box.setAttribute("aria-label", `Show results for the ${label}`);
      placeBox(box, garment.box);
      garmentBoxes.append(box);
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "garment-chip";
      chip.dataset.index = String(index);
      chip.dataset.slot = garment.slot;
      chip.textContent = slotName(garment.slot);
      chip.title = label;
      garmentChips.append(chip);
    });
    garmentChips.hidden = false;
    caption.textContent = "We found these garments: pick one, or drag a box to search any part.";
    pickGarment(data.default_garment, data);
  }
  // Shows a garment's results from the answer already here (no upload); "complete the look" follows it.
  function pickGarment(index, data) {
    const garment = state.garments[index];
    if (!garment) return;
    state.garment = index;
    for (const el of [...garmentBoxes.children, ...garmentChips.children]) {
      const active = Number(el.dataset.index) === index;
      el.classList.toggle("active", active);
      if (el.classList.contains("garment-chip")) el.setAttribute("aria-pressed", active ? "true" : "false");
    }
    results.replaceChildren();
    const fragment = document.createDocumentFragment();
    const hits = index === state.defaultGarment && data ? data.results : garment.results;
    for (const hit of hits) fragment.appendChild(makeCard(hit, state.searchId));
    results.appendChild(fragment);
    if (window.lookalikePaintSwatches) window.lookalikePaintSwatches(results);
    state.offset = hits.length;
    loadMore.hidden = index === state.defaultGarment && data ? !data.has_more : hits.length < PAGE;
    statusEl.textContent = `${hits.length} results for the ${slotName(garment.slot).toLowerCase()}`;
    evidenceBox.hidden = true;
    results.setAttribute("aria-busy", "false");
    announceQuery(padBox(garment.box));
  }
  function onGarmentClick(event) {
    const el = event.target.closest && event.target.closest("[data-index]");
    if (!el) return;
    event.preventDefault();
    event.stopPropagation();
    pickGarment(Number(el.dataset.index), null);
  }
  garmentBoxes.addEventListener("click", onGarmentClick);
  garmentChips.addEventListener("click", onGarmentClick);

  function showEvidence(data) {
    evidenceBox.hidden = true;
    if (!data.regions || !data.results.length || state.crop || state.itemId !== null) return;
    const region = data.regions[data.results[0].region || 0];
    if (!region || region.source === "whole") return;
    placeBox(evidenceBox, region.box);
    evidenceBox.title = `Best match found here (${region.source})`;
    evidenceBox.hidden = false;
  }

  // ---- status, errors --------------------------------------------------------------------------------
  function setBusy(busy) {
    spinner.hidden = !busy;
    results.setAttribute("aria-busy", busy ? "true" : "false");
    loadMore.disabled = busy;
    if (busy && !results.children.length) statusEl.textContent = "Searching…";
  }
  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
  }
  function hideError() {
    errorEl.hidden = true;
  }
  function clearResults(text) {
    results.replaceChildren();
    loadMore.hidden = true;
    statusEl.textContent = text;
  }
  function capitalize(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".") : text;
  }

  // ---- choosing the query ----------------------------------------------------------------------------
  function setFile(file) {
    if (!file) return;
    if (file.size > MAX_BYTES) {
      showError(`That file is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${MAX_BYTES / 1048576} MB.`);
      return;
    }
    state.file = file;
    state.itemId = null;
    state.crop = null;
    resetWords();
    if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
    state.objectUrl = URL.createObjectURL(file);
    showQueryImage(state.objectUrl);
    if (location.search) history.pushState({}, "", "/");
    run(false);
  }

  function setItem(id, title, push) {
    state.file = null;
    resetWords();
    state.itemId = Number(id);
    state.itemTitle = title || "";
    state.crop = null;
    showQueryImage(`/items/${id}/image`);
    if (push) history.pushState({ item: id }, "", `/?item=${id}`);
    if (!state.itemTitle) {
      fetch(`/api/items/${id}`).then((r) => (r.ok ? r.json() : null)).then((item) => {
        if (item && state.itemId === Number(id)) {
          state.itemTitle = item.title;
          if (results.children.length) statusEl.textContent = `${results.children.length} items like “${item.title}”`;
        }
      }).catch(() => {});
    }
    run(false);
  }

  function showQueryImage(src) {
    clearGarments();
    queryImage.src = src;
    dropzone.classList.add("has-image");
    cropBox.hidden = true;
    evidenceBox.hidden = true;
    clearCrop.hidden = true;
    caption.textContent = "Drag a box on the photo to search just that part.";
  }

  fileInput.addEventListener("change", () => {
    if (fileInput.files && fileInput.files[0]) setFile(fileInput.files[0]);
    fileInput.value = "";
  });
  $("new-photo").addEventListener("click", () => fileInput.click());
  dropzone.addEventListener("keydown", (event) => {
    if ((event.key === "Enter" || event.key === " ") && event.target === dropzone) {
      event.preventDefault();
      fileInput.click();
    }
  });

  // Drag-and-drop anywhere on the page; paste anywhere.
  document.addEventListener("dragover", (event) => {
    if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropzone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    dropzone.classList.remove("dragging");
    setFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    const file = items.find((f) => f.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      setFile(file);
    }
  });

  // "More like this" (links work without JavaScript too).
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a.more-like");
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    setItem(link.dataset.item, link.dataset.title || "", true);
    window.scrollTo({ top: 0, behavior: "smooth" });
  });
  window.addEventListener("popstate", () => {
    const id = new URLSearchParams(location.search).get("item");
    if (id) setItem(id, "", false);
  });

  // ---- crop box --------------------------------------------------------------------------------------
  let drag = null;
  function relativePoint(event) {
    const rect = queryImage.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return { x: clamp((event.clientX - rect.left) / rect.width), y: clamp((event.clientY - rect.top) / rect.height) };
  }
  function placeBox(el, box) {
    el.style.left = `${box[0] * 100}%`;
    el.style.top = `${box[1] * 100}%`;
    el.style.width = `${(box[2] - box[0]) * 100}%`;
    el.style.height = `${(box[3] - box[1]) * 100}%`;
  }
  function dragBox(p) {
    return [Math.min(drag.x, p.x), Math.min(drag.y, p.y), Math.max(drag.x, p.x), Math.max(drag.y, p.y)];
  }
  stage.addEventListener("pointerdown", (event) => {
    if (!queryImage.complete || !queryImage.naturalWidth || event.button !== 0) return;
    if (event.target.closest && event.target.closest(".garment-box")) return; // a click on a garment, not a drag
    event.preventDefault();
    stage.setPointerCapture(event.pointerId);
    drag = relativePoint(event);
    evidenceBox.hidden = true;
    placeBox(cropBox, [drag.x, drag.y, drag.x, drag.y]);
    cropBox.hidden = false;
  });
  stage.addEventListener("pointermove", (event) => {
    if (drag) placeBox(cropBox, dragBox(relativePoint(event)));
  });
  stage.addEventListener("pointerup", async (event) => {
    if (!drag) return;
    const box = dragBox(relativePoint(event));
    drag = null;
    if (box[2] - box[0] < 0.03 || box[3] - box[1] < 0.03) {
      cropBox.hidden = !state.crop;
      if (state.crop) placeBox(cropBox, state.crop);
      return;
    }
    if (!state.file && state.itemId !== null) {
      // Cropping a catalog item: search with its picture as an upload from now on.
      const response = await fetch(`/items/${state.itemId}/image`);
      if (!response.ok) {
        showError("Could not load that item's picture to crop it.");
        return;
      }
      const blob = await response.blob();
      state.file = new File([blob], `item-${state.itemId}${blob.type === "image/png" ? ".png" : ".jpg"}`,
        { type: blob.type });
      state.itemId = null;
      history.pushState({}, "", "/");
    }
    state.crop = box;
    placeBox(cropBox, box);
    clearCrop.hidden = false;
    caption.textContent = "Searching your selection. Drag again to change it.";
    run(false);
  });
  stage.addEventListener("pointercancel", () => {
    drag = null;
  });
  clearCrop.addEventListener("click", () => {
    state.crop = null;
    cropBox.hidden = true;
    clearCrop.hidden = true;
    caption.textContent = "Drag a box on the photo to search just that part.";
    run(false);
  });

  // ---- filters, threshold, load more -----------------------------------------------------------------
  form.addEventListener("change", (event) => {
    if (event.target.matches("select[name=filter], #collapse")) run(false);
  });
  threshold.addEventListener("input", () => {
    thresholdValue.textContent = currentThreshold() === null ? "off" : Number(threshold.value).toFixed(2);
  });
  threshold.addEventListener("change", () => run(false));
  $("reset-filters").addEventListener("click", () => {
    for (const select of form.querySelectorAll("select[name=filter]")) select.value = "";
    threshold.value = "0";
    thresholdValue.textContent = "off";
    run(false);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run(false);
  });
  loadMore.addEventListener("click", () => run(true));

  // ---- words, modifier, thumbs up / down ---------------------------------------------------------------
  function resetWords() {
    state.text = "";
    state.positive = [];
    state.negative = [];
    if (modifierInput) modifierInput.value = "";
  }
  function searchWords() {
    const text = textInput.value.trim();
    if (!text) return;
    resetWords();
    state.text = text;
    state.file = null;
    state.itemId = null;
    state.crop = null;
    dropzone.classList.remove("has-image");
    if (location.search) history.pushState({}, "", "/");
    run(false);
  }
  if (textInput) {
    $("text-search").addEventListener("click", searchWords);
    textInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        searchWords();
      }
    });
  }
  if (modifierInput) {
    modifierInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        run(false);
      }
    });
    modifierInput.addEventListener("change", () => run(false));
  }
  // Thumbs re-rank the grid in place: the same query plus the feedback, no new upload.
  results.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button.thumb");
    if (!button) return;
    const id = Number(button.closest(".card").dataset.itemId);
    const up = button.classList.contains("thumb-up");
    state.positive = state.positive.filter((x) => x !== id);
    state.negative = state.negative.filter((x) => x !== id);
    (up ? state.positive : state.negative).push(id);
    run(false);
  });

  // ---- start -----------------------------------------------------------------------------------------
  const startItem = new URLSearchParams(location.search).get("item");
  if (startItem && /^\d+$/.test(startItem)) setItem(startItem, "", false);
  document.body.classList.add("js");
})();
