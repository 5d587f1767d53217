// The apps and their input controls, generated from /openapi.json: nothing here knows a field by name,
// so new apps (upscale, refine, plugins) appear with their own controls. Conventions read from the
// schema: the `image_url` field is the input image (picked separately); an `enable_*` boolean starts
// a group of the fields after it and acts as its on/off switch.

const LARGE_RANGE = 1e6; // wider than this: a number box, no slider

/** Follow $ref / allOf / anyOf-with-null to a concrete schema; `nullable` says whether null is allowed. */
export function resolve(spec, schema) {
  let nullable = false;
  for (let i = 0; i < 10 && schema; i += 1) {
    if (schema.$ref) {
      const base = { ...schema };
      delete base.$ref;
      const target = schema.$ref.replace(/^#\/components\/schemas\//, "");
      schema = { ...spec.components.schemas[target], ...base };
    } else if (schema.allOf && schema.allOf.length === 1) {
      const { allOf, ...rest } = schema;
      schema = { ...allOf[0], ...rest };
    } else if (schema.anyOf) {
      const { anyOf, ...rest } = schema;
      const others = anyOf.filter((s) => s.type !== "null");
      nullable = nullable || others.length < anyOf.length;
      schema = others.length === 1 ? { ...others[0], ...rest } : { type: "string", ...rest };
    } else {
      break;
    }
  }
  return { schema: schema || {}, nullable };
}

/** Every queue app: a POST with a JSON body that has an `image_url` field (sync `/run/…` copies left out). */
export function appsFromOpenAPI(spec) {
  const apps = [];
  for (const [path, item] of Object.entries(spec.paths || {})) {
    const op = item.post;
    const bodySchema = op?.requestBody?.content?.["application/json"]?.schema;
    if (!bodySchema || path.startsWith("/run/")) continue;
    const { schema } = resolve(spec, bodySchema);
    if (!schema.properties || !schema.properties.image_url) continue;
    apps.push({
      id: path.replace(/^\//, ""),
      tag: (op.tags && op.tags[0]) || "apps",
      summary: op.summary || "",
      schema,
    });
  }
  // Fields every app has (seed, output format…) go last, in their own group.
  const common = apps.length > 1
    ? Object.keys(apps[0].schema.properties).filter((n) => apps.every((a) => n in a.schema.properties))
    : [];
  for (const app of apps) app.common = new Set(common.filter((n) => n !== "image_url"));
  return apps;
}

function titleOf(name, prop) {
  return prop.title || name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
}

/**
 * Split an app's fields into groups: its own leading fields, one group per `enable_*` switch, and
 * last the fields all apps share (`common`).
 */
export function groupFields(schema, common = new Set()) {
  const groups = [{ id: "options", title: "Options", toggle: null, fields: [] }];
  const shared = { id: "common", title: "Output and seed", toggle: null, fields: [] };
  for (const [name, prop] of Object.entries(schema.properties)) {
    if (name === "image_url") continue;
    if (common.has(name)) {
      shared.fields.push(name);
      continue;
    }
    if (name.startsWith("enable_") && prop.type === "boolean") {
      const title = (prop.description || titleOf(name, prop)).replace(/^enable\s+/i, "");
      groups.push({ id: name.slice(7), title: title.charAt(0).toUpperCase() + title.slice(1), toggle: name, fields: [] });
    } else {
      groups[groups.length - 1].fields.push(name);
    }
  }
  if (groups.length === 1) groups[0].title = "Parameters";
  groups.push(shared);
  return groups.filter((g) => g.toggle || g.fields.length);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter(Boolean));
  return node;
}

function fmt(value) {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

function bounds(prop) {
  const isInt = prop.type === "integer";
  let min = prop.minimum ?? prop.exclusiveMinimum;
  let max = prop.maximum ?? prop.exclusiveMaximum;
  const span = min !== undefined && max !== undefined ? max - min : undefined;
  const step = isInt ? 1 : span ? 10 ** Math.floor(Math.log10(span / 100)) : "any";
  if (prop.exclusiveMinimum !== undefined && prop.minimum === undefined) min += isInt ? 1 : step;
  if (prop.exclusiveMaximum !== undefined && prop.maximum === undefined) max -= isInt ? 1 : step;
  return { min, max, step, slider: span !== undefined && span <= LARGE_RANGE };
}

function hintText(prop, nullable) {
  const parts = [];
  if (prop.description) parts.push(prop.description);
  const { min, max, slider } = bounds(prop);
  if (prop.type === "number" || prop.type === "integer") {
    if (slider) parts.push(`range ${min} – ${max}`);
    else if (min !== undefined) parts.push(`at least ${min}`);
  }
  if (prop.default !== undefined && prop.default !== null && prop.default !== "") {
    parts.push(`default ${fmt(prop.default)}`);
  }
  else if (nullable) parts.push("optional");
  return parts.join(" · ");
}

function numberControl(id, prop, nullable) {
  const { min, max, step, slider } = bounds(prop);
  const hasDefault = prop.default !== undefined && prop.default !== null;
  const number = el("input", { id, type: "number", min, max, step, placeholder: hasDefault ? "" : "(unset)" });
  const range = slider ? el("input", { type: "range", min, max, step, tabindex: "-1", "aria-hidden": "true" }) : null;
  range?.addEventListener("input", () => {
    number.value = range.value;
    number.dispatchEvent(new Event("input", { bubbles: true }));
  });
  number.addEventListener("input", () => {
    if (range && number.value !== "") range.value = number.value;
  });
  const set = (v) => {
    number.value = v === undefined || v === null ? "" : v;
    if (range) range.value = number.value === "" ? (min + max) / 2 : number.value;
  };
  const get = () => (number.value === "" ? undefined : Number(number.value));
  const check = () => {
    const v = get();
    if (v === undefined) return nullable || hasDefault ? "" : "a value is required";
    if (Number.isNaN(v)) return "not a number";
    if (prop.type === "integer" && !Number.isInteger(v)) return "must be a whole number";
    if ((min !== undefined && v < min) || (max !== undefined && v > max)) return `must be between ${min} and ${max}`;
    return "";
  };
  const box = el("span", { class: "number-control" }, range, number);
  return { input: number, box, get, set, check };
}

function enumControl(id, prop) {
  const values = prop.enum;
  const select = el("select", { id }, ...values.map((v, i) => el("option", { value: String(i), text: String(v) })));
  return {
    input: select,
    box: select,
    get: () => values[Number(select.value)],
    set: (v) => {
      const i = values.indexOf(v);
      select.value = String(i >= 0 ? i : 0);
    },
    check: () => "",
  };
}

function checkboxControl(id) {
  const box = el("input", { id, type: "checkbox" });
  return { input: box, box, get: () => box.checked, set: (v) => (box.checked = Boolean(v)), check: () => "" };
}

function textControl(id, name, prop, required) {
  const long = /prompt/.test(name) || (prop.maxLength || 0) > 300;
  const isUrl = /image_url$/.test(name);
  const input = long ? el("textarea", { id, rows: "3" }) : el("input", { id, type: isUrl ? "url" : "text" });
  if (isUrl) input.placeholder = "https://… or data:…";
  return {
    input,
    box: input,
    get: () => (input.value === "" && !required ? undefined : input.value),
    set: (v) => (input.value = v ?? ""),
    check: () => (required && !input.value.trim() ? "required" : ""),
  };
}

function jsonControl(id) {
  const input = el("textarea", { id, rows: "2", placeholder: "JSON" });
  const parse = () => (input.value.trim() === "" ? undefined : JSON.parse(input.value));
  const get = () => {
    try {
      return parse();
    } catch {
      return undefined; // check() reports it
    }
  };
  const check = () => {
    try {
      parse();
      return "";
    } catch {
      return "not valid JSON";
    }
  };
  return { input, box: input, get, set: (v) => (input.value = v === undefined ? "" : JSON.stringify(v)), check };
}

function makeControl(spec, name, rawProp, required) {
  const { schema: prop, nullable } = resolve(spec, rawProp);
  const id = `f-${name}`;
  let control;
  if (prop.enum) control = enumControl(id, prop);
  else if (prop.type === "boolean") control = checkboxControl(id);
  else if (prop.type === "number" || prop.type === "integer") control = numberControl(id, prop, nullable);
  else if (prop.type === "string") control = textControl(id, name, prop, required);
  else control = jsonControl(id);
  const hint = el("small", { id: `${id}-hint`, class: "hint", text: hintText(prop, nullable) });
  const error = el("span", { id: `${id}-error`, class: "error", role: "alert" });
  control.input.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
  control.input.name = name;
  const label = el("label", { for: id, text: titleOf(name, prop) + (required ? " *" : "") });
  const row = prop.type === "boolean" && !prop.enum
    ? el("div", { class: "field check" }, control.box, label, hint, error)
    : el("div", { class: "field" }, label, control.box, hint, error);
  row.dataset.field = name;
  control.reset = () => control.set(prop.default ?? undefined);
  control.isDefault = () => JSON.stringify(control.get()) === JSON.stringify(prop.default ?? undefined);
  control.showError = (message) => {
    error.textContent = message;
    control.input.setAttribute("aria-invalid", message ? "true" : "false");
  };
  control.reset();
  return { name, row, control, required };
}

function buildGroup(spec, schema, group, required, fields) {
  const body = el("div", { class: "group-body", id: `group-${group.id}` });
  for (const name of group.fields) {
    const item = makeControl(spec, name, schema.properties[name], required.has(name));
    fields.set(name, item);
    body.append(item.row);
  }
  if (!group.toggle) {
    return el("fieldset", { class: "group" }, el("legend", { text: group.title }), body);
  }
  const toggle = el("input", { type: "checkbox", id: `f-${group.toggle}`, name: group.toggle, "aria-controls": body.id });
  const fieldset = el("fieldset", { class: "group toggled off", "data-group": group.id },
    el("legend", {}, el("label", { class: "toggle" }, toggle, ` ${group.title}`)), body);
  const sync = () => {
    fieldset.classList.toggle("off", !toggle.checked);
    fieldset.disabled = !toggle.checked; // the legend's switch stays usable
    toggle.setAttribute("aria-expanded", String(toggle.checked));
  };
  toggle.addEventListener("change", sync);
  toggle.checked = Boolean(schema.properties[group.toggle].default);
  sync();
  fields.set(group.toggle, { name: group.toggle, toggle, group, control: null });
  return fieldset;
}

/**
 * Render the controls of `app` into `container`; returns {values(), validate(), reset(), showErrors()}.
 * values(): the request body without image_url — an enabled group sends its switch and all its
 * fields, the rest only what differs from the default.
 */
export function renderForm(spec, app, container) {
  container.replaceChildren();
  const required = new Set(app.schema.required || []);
  const fields = new Map();
  const groups = groupFields(app.schema, app.common);
  for (const group of groups) container.append(buildGroup(spec, app.schema, group, required, fields));

  const values = () => {
    const body = {};
    for (const group of groups) {
      const on = group.toggle ? fields.get(group.toggle).toggle.checked : null;
      if (on === false) continue;
      if (on) body[group.toggle] = true;
      for (const name of group.fields) {
        const { control } = fields.get(name);
        const v = control.get();
        if (v !== undefined && (on || required.has(name) || !control.isDefault())) body[name] = v;
      }
    }
    return body;
  };
  const validate = () => {
    let ok = true;
    for (const item of fields.values()) {
      if (!item.control) continue;
      const message = item.row.closest("fieldset").disabled ? "" : item.control.check();
      item.control.showError(message);
      ok = ok && !message;
    }
    return ok;
  };
  const reset = () => {
    for (const item of fields.values()) {
      if (item.control) item.control.reset();
      else {
        item.toggle.checked = Boolean(app.schema.properties[item.name].default);
        item.toggle.dispatchEvent(new Event("change"));
      }
      item.control?.showError("");
    }
  };
  const showErrors = (detail) => {
    let shown = false;
    for (const d of Array.isArray(detail) ? detail : []) {
      const name = (d.loc || []).filter((p) => p !== "body")[0];
      const item = fields.get(name);
      if (item?.control) {
        item.control.showError(d.msg);
        shown = true;
      }
    }
    return shown;
  };
  return { values, validate, reset, showErrors };
}
