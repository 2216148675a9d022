//! Synthetic persons: identity numbers from the test range and Swedish names.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use time::{Date, Duration, macros::date};

use super::{FIRST_BIRTH_NUMBER, LAST_BIRTH_NUMBER, Synth, SynthError};
use crate::domain::Personnummer;
use crate::domain::personnummer::luhn_check_digit;

const FEMALE: &[&str] = &[
    "Anna",
    "Eva",
    "Maria",
    "Karin",
    "Sara",
    "Lena",
    "Emma",
    "Kerstin",
    "Ingrid",
    "Sofia",
    "Marie",
    "Malin",
    "Elin",
    "Ida",
    "Linnea",
    "Johanna",
    "Birgitta",
    "Ulla",
    "Hanna",
    "Astrid",
    "Maja",
    "Elsa",
    "Ebba",
    "Saga",
    "Alva",
    "Agnes",
    "Wilma",
    "Inger",
    "Margareta",
    "Camilla",
];
const MALE: &[&str] = &[
    "Lars", "Anders", "Johan", "Per", "Erik", "Karl", "Mikael", "Peter", "Jan", "Thomas", "Daniel",
    "Fredrik", "Hans", "Bengt", "Magnus", "Nils", "Oskar", "Lucas", "William", "Hugo", "Axel", "Elias",
    "Liam", "Gustav", "Olof", "Sven", "Stefan", "Mats", "Göran", "Björn",
];
const SURNAMES: &[&str] = &[
    "Andersson",
    "Johansson",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsson",
    "Persson",
    "Svensson",
    "Gustafsson",
    "Pettersson",
    "Jonsson",
    "Jansson",
    "Hansson",
    "Bengtsson",
    "Jönsson",
    "Lindberg",
    "Jakobsson",
    "Magnusson",
    "Olofsson",
    "Lindström",
    "Lindqvist",
    "Lindgren",
    "Berg",
    "Axelsson",
    "Bergström",
    "Lundberg",
    "Lind",
    "Lundgren",
    "Lundqvist",
    "Mattsson",
    "Berglund",
    "Fredriksson",
    "Sandberg",
    "Henriksson",
    "Forsberg",
    "Sjöberg",
    "Wallin",
    "Engström",
    "Ali",
];

/// Numbers in a row found taken before [`Synth::identity`] draws from its wider range.
const WIDEN_AFTER: u32 = 20;

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.get(rng.random_range(0..list.len()))
        .copied()
        .unwrap_or("Test")
}

impl Synth {
    /// A synthetic identity number (12 digits with a dash before the last four), its birth date
    /// and whether the birth number marks a woman.
    ///
    /// Birth dates are drawn from 1935–2004 and 2 % of the numbers are coordination numbers. That
    /// range holds about 511,000 personal identity numbers with birth numbers 980–999, which a
    /// register of half a million persons fills: after [`WIDEN_AFTER`] numbers in a row that were
    /// taken, the draw widens to births from 1910 on and coordination numbers for half of them
    /// (about 1.4 million numbers). Up to about 200,000 persons (40 % of the range taken) the
    /// chance that any draw meets that many in a row is about one in a thousand, so such a
    /// register (the demo, the tests, the usual benchmarks) is what it always was.
    pub(super) fn identity(&mut self) -> Result<(String, Date, bool), SynthError> {
        let mut taken = 0;
        for _ in 0..10_000 {
            let wide = taken >= WIDEN_AFTER;
            let birth = if wide {
                date!(1910 - 01 - 01) + Duration::days(self.rng.random_range(0..34_680))
            } else {
                date!(1935 - 01 - 01) + Duration::days(self.rng.random_range(0..25_550))
            };
            if birth > self.until - Duration::days(365 * 18) && self.rng.random_bool(0.7) {
                // Fewer children than adults in the register.
                continue;
            }
            let number = self.rng.random_range(FIRST_BIRTH_NUMBER..=LAST_BIRTH_NUMBER);
            let coordination = self.rng.random_bool(if wide { 0.5 } else { 0.02 });
            let day = u16::from(birth.day()) + if coordination { 60 } else { 0 };
            let yymmdd = format!(
                "{:02}{:02}{:02}",
                birth.year().rem_euclid(100),
                u8::from(birth.month()),
                day
            );
            let nine: Vec<u8> = format!("{yymmdd}{number:03}").bytes().map(|b| b - b'0').collect();
            let check = luhn_check_digit(&nine);
            let digits = format!("{}{}{number:03}{check}", birth.year() / 100, yymmdd);
            if self.used.contains(&digits) {
                taken += 1;
                continue;
            }
            if Personnummer::from_storage(&digits).is_err() {
                continue;
            }
            self.used.insert(digits.clone());
            let display = format!("{}-{}", &digits[..8], &digits[8..]);
            return Ok((display, birth, number % 2 == 0));
        }
        Err(SynthError::IdentitiesExhausted)
    }

    /// A first name that goes with the birth number's sex, and a surname.
    pub(super) fn name(&mut self, female: bool) -> String {
        let first = if female {
            pick(&mut self.rng, FEMALE)
        } else {
            pick(&mut self.rng, MALE)
        };
        format!("{first} {}", pick(&mut self.rng, SURNAMES))
    }
}
