//! One indexed item by rating key, with its show's external ids for an episode: what the
//! scrobble job knows of a play before any Plex call (its kind, title, year, section, and the
//! ids Trakt takes).

use anyhow::Result;
use rusqlite::OptionalExtension;

use super::Store;

/// An `items` row, and for an episode its show's title and ids (when the show is indexed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ItemRow {
    pub rating_key: String,
    pub kind: String,
    pub title: String,
    pub year: Option<i64>,
    pub section: String,
    /// The section's title, when the index has the section.
    pub section_title: Option<String>,
    pub season: Option<i64>,
    pub episode: Option<i64>,
    pub show_key: Option<String>,
    pub imdb: Option<String>,
    pub tmdb: Option<String>,
    pub tvdb: Option<String>,
    pub show_title: Option<String>,
    pub show_imdb: Option<String>,
    pub show_tmdb: Option<String>,
    pub show_tvdb: Option<String>,
}

impl Store {
    /// The indexed item `rating_key`, if the index has it.
    pub fn item_row(&self, rating_key: &str) -> Result<Option<ItemRow>> {
        let mut q = self.conn.prepare_cached(
            "SELECT i.rating_key, i.type, i.title, i.year, i.section_key, i.season, i.episode,
                    i.grandparent_key, i.imdb, i.tmdb, i.tvdb, s.title, s.imdb, s.tmdb, s.tvdb,
                    x.title
             FROM items i LEFT JOIN items s ON s.rating_key = i.grandparent_key
                          LEFT JOIN sections x ON x.key = i.section_key
             WHERE i.rating_key = ?1",
        )?;
        Ok(q.query_row([rating_key], |r| {
            Ok(ItemRow {
                rating_key: r.get(0)?,
                kind: r.get(1)?,
                title: r.get(2)?,
                year: r.get(3)?,
                section: r.get(4)?,
                season: r.get(5)?,
                episode: r.get(6)?,
                show_key: r.get(7)?,
                imdb: r.get(8)?,
                tmdb: r.get(9)?,
                tvdb: r.get(10)?,
                show_title: r.get(11)?,
                show_imdb: r.get(12)?,
                show_tmdb: r.get(13)?,
                show_tvdb: r.get(14)?,
                section_title: r.get(15)?,
            })
        })
        .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_comes_with_its_show_and_an_unknown_key_is_none() {
        let s = Store::in_memory().unwrap();
        s.exec_for_tests(
            "INSERT INTO sections(key, type, title) VALUES ('2', 'show', 'TV Shows');
             INSERT INTO items(rating_key, section_key, type, title, year, tvdb, imdb)
                 VALUES ('10', '2', 'show', 'The Show', 2020, '81189', 'tt0903747');
             INSERT INTO items(rating_key, section_key, type, title, grandparent_key, season, episode, tvdb)
                 VALUES ('11', '2', 'episode', 'Pilot', '10', 1, 1, '349232');
             INSERT INTO items(rating_key, section_key, type, title, grandparent_key, season, episode)
                 VALUES ('12', '2', 'episode', 'Orphan', '99', 2, 3);",
        );
        let e = s.item_row("11").unwrap().unwrap();
        assert_eq!(e.kind, "episode");
        assert_eq!((e.season, e.episode), (Some(1), Some(1)));
        assert_eq!(e.tvdb.as_deref(), Some("349232"));
        assert_eq!(e.show_title.as_deref(), Some("The Show"));
        assert_eq!(e.show_tvdb.as_deref(), Some("81189"));
        assert_eq!(e.show_imdb.as_deref(), Some("tt0903747"));
        assert_eq!(e.section_title.as_deref(), Some("TV Shows"));
        let o = s.item_row("12").unwrap().unwrap();
        assert_eq!((o.show_key.as_deref(), o.show_title), (Some("99"), None));
        assert_eq!(s.item_row("404").unwrap(), None);
    }
}
