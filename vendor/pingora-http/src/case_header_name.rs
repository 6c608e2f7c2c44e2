// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use crate::*;
use bytes::Bytes;
use http::header;

#[derive(Debug, Clone)]
pub struct CaseHeaderName(CaseRepr);

// ORCHESTRA PATCH (header names without copies): a case name is either its bytes or, for a
// `HeaderName` that has no titled spelling (custom names, always lowercase), the `HeaderName`
// itself, so inserting such a header copies nothing (was: `Bytes::copy_from_slice` of the name
// on every insert).
#[derive(Debug, Clone)]
enum CaseRepr {
    Bytes(Bytes),
    Name(HeaderName),
}

impl From<Bytes> for CaseHeaderName {
    fn from(b: Bytes) -> Self {
        CaseHeaderName(CaseRepr::Bytes(b))
    }
}

impl CaseHeaderName {
    pub fn new(name: String) -> Self {
        Bytes::from(name).into()
    }
}

impl CaseHeaderName {
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            CaseRepr::Bytes(b) => b,
            CaseRepr::Name(n) => n.as_str().as_bytes(),
        }
    }

    pub fn from_slice(buf: &[u8]) -> Self {
        Bytes::copy_from_slice(buf).into()
    }
}

/// A trait that converts into case-sensitive header names.
pub trait IntoCaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName;

    /// ORCHESTRA PATCH (header names without copies): the case name and the [`HeaderName`]
    /// together. The default parses the case name (as pingora always did); a [`HeaderName`]
    /// is used as is instead of being parsed (and, for custom names, copied) again.
    fn into_case_and_header_name(self) -> Result<(CaseHeaderName, HeaderName)>
    where
        Self: Sized,
    {
        let case = self.into_case_header_name();
        let name = HeaderName::from_bytes(case.as_slice())
            .or_err(InvalidHTTPHeader, "invalid header name")?;
        Ok((case, name))
    }

    /// ORCHESTRA PATCH (no case name without a case map): the [`HeaderName`] alone, for a head
    /// that keeps no case map (`build_no_case`), where the case name would be built and
    /// dropped. The default parses as [`Self::into_case_and_header_name`] does.
    fn into_header_name(self) -> Result<HeaderName>
    where
        Self: Sized,
    {
        self.into_case_and_header_name().map(|(_, name)| name)
    }
}

impl IntoCaseHeaderName for CaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self
    }
}

impl IntoCaseHeaderName for String {
    fn into_case_header_name(self) -> CaseHeaderName {
        Bytes::from(self).into()
    }
}

impl IntoCaseHeaderName for &'static str {
    fn into_case_header_name(self) -> CaseHeaderName {
        Bytes::from(self).into()
    }
}

impl IntoCaseHeaderName for HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        titled_header_name(&self)
    }

    fn into_case_and_header_name(self) -> Result<(CaseHeaderName, HeaderName)> {
        Ok((titled_header_name(&self), self))
    }

    fn into_header_name(self) -> Result<HeaderName> {
        Ok(self)
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        titled_header_name(self)
    }

    fn into_case_and_header_name(self) -> Result<(CaseHeaderName, HeaderName)> {
        Ok((titled_header_name(self), self.clone()))
    }

    fn into_header_name(self) -> Result<HeaderName> {
        Ok(self.clone())
    }
}

impl IntoCaseHeaderName for Bytes {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.into()
    }
}

fn titled_header_name(header_name: &HeaderName) -> CaseHeaderName {
    match titled_header_name_str(header_name) {
        Some(s) => Bytes::from_static(s.as_bytes()).into(),
        // ORCHESTRA PATCH (header names without copies): the name itself (a reference count or
        // nothing to copy) instead of a copy of its bytes; the spelling is the same.
        None => CaseHeaderName(CaseRepr::Name(header_name.clone())),
    }
}

pub(crate) fn titled_header_name_str(header_name: &HeaderName) -> Option<&'static str> {
    Some(match *header_name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        // TODO: add more const header here to map to their titled case
        // TODO: automatically upper case the first letter?
        _ => {
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_header_name() {
        assert_eq!("FoO".into_case_header_name().as_slice(), b"FoO");
        assert_eq!("FoO".to_string().into_case_header_name().as_slice(), b"FoO");
        assert_eq!(header::SERVER.into_case_header_name().as_slice(), b"Server");
    }

    // ORCHESTRA PATCH (header names without copies)
    #[test]
    fn test_case_and_header_name() {
        let custom = HeaderName::from_static("x-request-id");
        let (case, name) = custom.clone().into_case_and_header_name().unwrap();
        assert_eq!(case.as_slice(), b"x-request-id");
        assert_eq!(name, custom);
        let (case, name) = (&header::HOST).into_case_and_header_name().unwrap();
        assert_eq!(case.as_slice(), b"Host");
        assert_eq!(name, header::HOST);
        let (case, name) = "X-Custom".into_case_and_header_name().unwrap();
        assert_eq!(case.as_slice(), b"X-Custom");
        assert_eq!(name.as_str(), "x-custom");
        assert!("bad name".into_case_and_header_name().is_err());
    }

    // ORCHESTRA PATCH (no case name without a case map)
    #[test]
    fn test_header_name_alone() {
        let custom = HeaderName::from_static("x-request-id");
        assert_eq!(custom.clone().into_header_name().unwrap(), custom);
        assert_eq!((&header::HOST).into_header_name().unwrap(), header::HOST);
        assert_eq!("X-Custom".into_header_name().unwrap().as_str(), "x-custom");
        assert!("bad name".into_header_name().is_err());
    }
}
