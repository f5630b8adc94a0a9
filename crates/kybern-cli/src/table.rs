//! Plain box-drawn tables for results, sized to their content.

/// Renders rows under a header as a table.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |l: &str, m: &str, r: &str| {
        let parts: Vec<String> = widths.iter().map(|w| "─".repeat(w + 2)).collect();
        format!("{l}{}{r}\n", parts.join(m))
    };
    let cells = |cells: Vec<&str>| {
        let parts: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let c = cells.get(i).copied().unwrap_or_default();
                format!(" {c}{} ", " ".repeat(w - c.chars().count()))
            })
            .collect();
        format!("│{}│\n", parts.join("│"))
    };
    let mut out = line("┌", "┬", "┐");
    out.push_str(&cells(header.to_vec()));
    out.push_str(&line("├", "┼", "┤"));
    for row in rows {
        out.push_str(&cells(row.iter().map(String::as_str).collect()));
    }
    out.push_str(&line("└", "┴", "┘"));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn pads_cells_to_the_widest() {
        let t = super::render(&["ID", "NAME"], &[vec!["1".into(), "longer".into()]]);
        assert!(t.contains("│ ID │ NAME   │"), "{t}");
        assert!(t.contains("│ 1  │ longer │"), "{t}");
    }
}
