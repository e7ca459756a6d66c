//! kubectl's JSONPath templates (`-o jsonpath=...`): text with `{...}` blocks that
//! hold a path (`{.metadata.name}`, `{.items[*].status.podIP}`,
//! `{.status.conditions[?(@.type=="Ready")].status}`), a literal (`{"\n"}`), or a
//! `{range PATH}...{end}` loop. Several results of one path are joined by spaces.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    Text(String),
    Path(Path),
    Range(Path, Vec<Node>),
}

#[derive(Clone, Debug, PartialEq)]
struct Path(Vec<Step>);

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    /// `[?(@.path)]`, `[?(@.path=="v")]`, `[?(@.path!="v")]`.
    Filter { path: Path, test: Option<(bool, Value)> },
}

impl std::str::FromStr for Template {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Self> {
        let mut root = Vec::new();
        // Open `{range}` blocks, innermost last.
        let mut ranges: Vec<(Path, Vec<Node>)> = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let open = rest.find('{').unwrap_or(rest.len());
            let target = ranges.last_mut().map_or(&mut root, |r| &mut r.1);
            if open > 0 {
                target.push(Node::Text(rest[..open].to_string()));
            }
            if open == rest.len() {
                break;
            }
            let close = find_close(&rest[open..])
                .ok_or_else(|| anyhow::anyhow!("error parsing jsonpath {text}: unclosed action"))?;
            let action = rest[open + 1..open + close].trim();
            rest = &rest[open + close + 1..];
            if let Some(path) = action.strip_prefix("range ") {
                ranges.push((parse_path(path.trim())?, Vec::new()));
            } else if action == "end" {
                let (path, body) = ranges
                    .pop()
                    .ok_or_else(|| anyhow::anyhow!("error parsing jsonpath {text}: not in range, nothing to end"))?;
                ranges.last_mut().map_or(&mut root, |r| &mut r.1).push(Node::Range(path, body));
            } else if let Some(literal) = quoted(action) {
                target.push(Node::Text(literal));
            } else {
                let path = parse_path(action).map_err(|e| anyhow::anyhow!("error parsing jsonpath {text}: {e}"))?;
                target.push(Node::Path(path));
            }
        }
        if !ranges.is_empty() {
            anyhow::bail!("error parsing jsonpath {text}: unclosed range");
        }
        Ok(Template { nodes: root })
    }
}

impl Template {
    pub fn render(&self, root: &Value) -> anyhow::Result<String> {
        let mut out = String::new();
        render_nodes(&self.nodes, root, &mut out)?;
        Ok(out)
    }
}

fn render_nodes(nodes: &[Node], current: &Value, out: &mut String) -> anyhow::Result<()> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Path(path) => {
                let values = path.eval(current);
                let texts: Vec<String> = values.iter().map(|v| scalar_text(v)).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(path, body) => {
                for value in path.eval(current) {
                    render_nodes(body, value, out)?;
                }
            }
        }
    }
    Ok(())
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Path {
    fn eval<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![root];
        for step in &self.0 {
            current = current
                .into_iter()
                .flat_map(|v| step.apply(v))
                .collect();
        }
        current
    }
}

impl Step {
    fn apply<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        match self {
            Step::Field(name) => v.get(name).into_iter().collect(),
            Step::Index(i) => {
                let Some(items) = v.as_array() else { return vec![] };
                let index = if *i < 0 { items.len() as i64 + i } else { *i };
                usize::try_from(index).ok().and_then(|i| items.get(i)).into_iter().collect()
            }
            Step::Wildcard => match v {
                Value::Array(items) => items.iter().collect(),
                Value::Object(map) => map.values().collect(),
                _ => vec![],
            },
            Step::Filter { path, test } => v
                .as_array()
                .into_iter()
                .flatten()
                .filter(|item| {
                    let found = path.eval(item);
                    match test {
                        None => !found.is_empty(),
                        Some((equal, want)) => found.iter().any(|f| (*f == want) == *equal),
                    }
                })
                .collect(),
        }
    }
}

/// The index of the `}` that closes the `{` at 0, skipping quoted text.
fn find_close(s: &str) -> Option<usize> {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            _ if escaped => escaped = false,
            (_, '\\') => escaped = true,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// `"text"` or `'text'` with `\n`, `\t` and `\\` escapes.
fn quoted(s: &str) -> Option<String> {
    let q = s.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = s.strip_prefix(q)?.strip_suffix(q)?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn parse_path(s: &str) -> anyhow::Result<Path> {
    let s = s.strip_prefix('$').or_else(|| s.strip_prefix('@')).unwrap_or(s);
    let mut steps = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let mut name = String::new();
                // Operators and spaces end a name; the loop below then refuses them.
                while i < chars.len() && !".[<>=!() ".contains(chars[i]) {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    name.push(chars[i]);
                    i += 1;
                }
                if name == "*" {
                    steps.push(Step::Wildcard);
                } else if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let close = matching_bracket(&chars, i)
                    .ok_or_else(|| anyhow::anyhow!("unterminated array in {s}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(parse_bracket(inner.trim())?);
                i = close + 1;
            }
            c => anyhow::bail!("unrecognized character in action: {c:?}"),
        }
    }
    Ok(Path(steps))
}

fn matching_bracket(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote = None;
    for (i, &c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str) -> anyhow::Result<Step> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(key) = quoted(inner) {
        return Ok(Step::Field(key));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    let filter = inner
        .strip_prefix("?(")
        .and_then(|f| f.strip_suffix(')'))
        .ok_or_else(|| anyhow::anyhow!("unsupported array expression [{inner}]"))?;
    let (path, test) = match filter.find("==").map(|i| (i, true)).or_else(|| filter.find("!=").map(|i| (i, false))) {
        Some((at, equal)) => {
            let literal = filter[at + 2..].trim();
            let value = quoted(literal)
                .map(Value::String)
                .or_else(|| serde_json::from_str(literal).ok())
                .ok_or_else(|| anyhow::anyhow!("unsupported filter value {literal}"))?;
            (filter[..at].trim(), Some((equal, value)))
        }
        None => (filter.trim(), None),
    };
    Ok(Step::Filter { path: parse_path(path)?, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, v: &Value) -> String {
        template.parse::<Template>().unwrap().render(v).unwrap()
    }

    #[test]
    fn renders_the_templates_people_use() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "a", "labels": {"app.kubernetes.io/name": "web"}},
             "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "b"}, "status": {"podIP": "10.0.0.2", "conditions": [{"type": "Ready", "status": "False"}]}}
        ]});
        assert_eq!(render("{.items[*].metadata.name}", &list), "a b");
        assert_eq!(render("{.items[0].status.podIP}", &list), "10.0.0.1");
        assert_eq!(render("{.items[-1].metadata.name}", &list), "b");
        assert_eq!(
            render(r#"{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#, &list),
            "a=True\nb=False\n"
        );
        assert_eq!(render(r"{.items[0].metadata.labels.app\.kubernetes\.io/name}", &list), "web");
        assert_eq!(render("name: {.items[1].metadata.name}!", &list), "name: b!");
        assert_eq!(render("{.items[0].status.conditions[0]}", &list), r#"{"status":"True","type":"Ready"}"#);
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!("{.a".parse::<Template>().is_err());
        assert!("{range .items[*]}{.a}".parse::<Template>().is_err());
        assert!("{end}".parse::<Template>().is_err());
        assert!("{.a[?(@.b>1)]}".parse::<Template>().is_err());
    }
}
